package keys

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
)

const secret = "s3cr3t-\n'$(id)\x00ünï"

func ptr(s string) *string { return &s }

func TestCheck(t *testing.T) {
	good := Spec{Text: ptr("x")}.WithDefaults("tls")
	for _, tc := range []struct {
		name string
		attr string
		edit func(*Spec)
		ok   bool
	}{
		{"defaults", "tls", func(*Spec) {}, true},
		{"dotted name", "tls.key", func(s *Spec) { s.Name = "tls.key" }, true},
		{"other dir", "tls", func(s *Spec) { s.DestDir = "/var/lib/secrets/web" }, true},
		{"deploy user", "tls", func(s *Spec) { s.User, s.Group, s.Permissions = "deploy", "keys", "0440" }, true},
		{"name ..", "tls", func(s *Spec) { s.Name = ".." }, false},
		{"name with slash", "tls", func(s *Spec) { s.Name = "a/b" }, false},
		{"name with newline", "tls", func(s *Spec) { s.Name = "a\nb" }, false},
		{"name with space", "tls", func(s *Spec) { s.Name = "a b" }, false},
		{"option-like name", "tls", func(s *Spec) { s.Name = "-rf" }, false},
		{"hidden name", "tls", func(s *Spec) { s.Name = ".tls" }, false},
		{"bad attribute, default name", "a b", func(s *Spec) { s.Name = "a b" }, false},
		{"relative dir", "tls", func(s *Spec) { s.DestDir = "run/keys" }, false},
		{"dir with ..", "tls", func(s *Spec) { s.DestDir = "/run/keys/../../etc" }, false},
		{"dir with .", "tls", func(s *Spec) { s.DestDir = "/run/./keys" }, false},
		{"dir //", "tls", func(s *Spec) { s.DestDir = "/run//keys" }, false},
		{"dir trailing /", "tls", func(s *Spec) { s.DestDir = "/run/keys/" }, false},
		{"dir /", "tls", func(s *Spec) { s.DestDir = "/" }, false},
		{"dir with newline", "tls", func(s *Spec) { s.DestDir = "/run/keys\n/x" }, false},
		{"dir with $", "tls", func(s *Spec) { s.DestDir = "/run/$(id)" }, false},
		{"user with space", "tls", func(s *Spec) { s.User = "a b" }, false},
		{"option-like group", "tls", func(s *Spec) { s.Group = "-x" }, false},
		{"permissions 777x", "tls", func(s *Spec) { s.Permissions = "777x" }, false},
		{"permissions 0800", "tls", func(s *Spec) { s.Permissions = "0800" }, false},
		{"uploadAt", "tls", func(s *Spec) { s.UploadAt = "never" }, false},
		{"relative keyFile", "tls", func(s *Spec) { s.Text, s.KeyFile = nil, "secret.txt" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.edit(&s)
			err := s.Check("web1", tc.attr)
			if (err == nil) != tc.ok {
				t.Fatalf("Check = %v, want ok %v", err, tc.ok)
			}
			if err != nil && fault.ClassOf(err) != fault.Usage {
				t.Errorf("class %q, want usage", fault.ClassOf(err))
			}
		})
	}
}

func TestReadNeverShowsTheContent(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "k")
	if err := os.WriteFile(file, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "cmd")
	os.WriteFile(script, []byte("#!/bin/sh\ncat "+file+"\ncat "+file+" >&2\nexit ${CODE:-0}\n"), 0o755)
	var trace strings.Builder
	run := &command.Runner{Trace: &trace}
	specs := map[string]Spec{
		"a": Spec{Text: ptr(secret)}.WithDefaults("a"),
		"b": Spec{KeyFile: file, UploadAt: PostActivation}.WithDefaults("b"),
		"c": Spec{KeyCommand: []string{script}}.WithDefaults("c"),
	}
	ks, err := Read(context.Background(), run, "web1", specs)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ks {
		if string(k.data) != secret {
			t.Errorf("key %s: content %q", k.Name, k.data)
		}
		js, _ := json.Marshal(k)
		for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s %q", k, k, k, k, k), string(js), trace.String()} {
			if strings.Contains(s, "s3cr3t") {
				t.Errorf("the content shows in %q", s)
			}
		}
	}
	if got := len(At(ks, PostActivation)); got != 1 {
		t.Errorf("%d post-activation keys, want 1", got)
	}

	t.Setenv("CODE", "3")
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"missing file", Spec{KeyFile: filepath.Join(dir, "nope")}, `web1: key "x": keyFile ` + filepath.Join(dir, "nope") + `: no such file or directory`},
		{"failing command", Spec{KeyCommand: []string{script, "arg"}}, `web1: key "x": keyCommand "` + script + ` arg" exited with 3`},
		{"missing command", Spec{KeyCommand: []string{filepath.Join(dir, "none")}}, `web1: key "x": keyCommand "` + filepath.Join(dir, "none") + `" could not run`},
		{"text and keyFile", Spec{Text: ptr(secret), KeyFile: file}, `web1: key "x": set exactly one of text, keyFile and keyCommand`},
		{"no source", Spec{}, `web1: key "x": set exactly one of text, keyFile and keyCommand`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(context.Background(), run, "web1", map[string]Spec{"x": tc.spec.WithDefaults("x")})
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tc.want {
				t.Errorf("error %q, want %q", err, tc.want)
			}
			if fe, ok := fault.As(err); !ok || fe.Class != Class || strings.Contains(fe.Hint, "s3cr3t") {
				t.Errorf("error %#v, want class keys without the content", err)
			}
		})
	}
}

func TestKeyCommandTimeout(t *testing.T) {
	old := commandTimeout
	commandTimeout = 200 * time.Millisecond
	defer func() { commandTimeout = old }()
	_, err := Read(context.Background(), &command.Runner{}, "web1", map[string]Spec{"x": Spec{KeyCommand: []string{"sleep", "60"}}.WithDefaults("x")})
	if want := `web1: key "x": keyCommand "sleep 60" did not end within 200ms`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}

func TestReadRefusesTwoKeysInOnePlace(t *testing.T) {
	_, err := Read(context.Background(), &command.Runner{}, "web1", map[string]Spec{
		"a": Spec{Text: ptr("1"), Name: "tls"}.WithDefaults("a"),
		"b": Spec{Text: ptr("2"), Name: "tls"}.WithDefaults("b"),
	})
	if err == nil || fault.ClassOf(err) != fault.Usage {
		t.Errorf("error %v, want a usage error", err)
	}
}

func TestFrame(t *testing.T) {
	ks := []Key{
		New(Spec{Name: "a", DestDir: "/run/keys", User: "root", Group: "keys", Permissions: "0640"}, []byte("one\ntwo\n")),
		New(Spec{Name: "empty", DestDir: "/var/lib/x", User: "deploy", Group: "deploy", Permissions: "600"}, nil),
	}
	got, err := Frame(ks)
	if err != nil {
		t.Fatal(err)
	}
	want := "key a /run/keys root keys 0640 8\n" + base64.StdEncoding.EncodeToString([]byte("one\ntwo\n")) + "\n" +
		"key empty /var/lib/x deploy deploy 600 0\n\nend 2\n"
	if d := cmp.Diff(want, string(got)); d != "" {
		t.Errorf("frame (-want +got):\n%s", d)
	}
	for _, bad := range []Spec{
		{Name: "a b", DestDir: "/run/keys", User: "root", Group: "root", Permissions: "0600"},
		{Name: "a", DestDir: "/run/../etc", User: "root", Group: "root", Permissions: "0600"},
		{Name: "a", DestDir: "/run/keys", User: "ro ot", Group: "root", Permissions: "0600"},
		{Name: "a", DestDir: "/run/keys", User: "root", Group: "root\nx", Permissions: "0600"},
		{Name: "a", DestDir: "/run/keys", User: "root", Group: "root", Permissions: "0600 1"},
	} {
		if _, err := Frame([]Key{New(bad, []byte(secret))}); err == nil {
			t.Errorf("Frame accepted %+v", bad)
		} else if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error shows the content: %v", err)
		}
	}
}
