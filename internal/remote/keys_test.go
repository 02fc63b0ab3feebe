package remote

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/skiffdeploy/skiff/internal/keys"
)

// runKeys runs keys.sh under dash with stream on its standard input.
func runKeys(t *testing.T, stream []byte) (string, int) {
	t.Helper()
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Skip("dash is not installed")
	}
	cmd := exec.Command(dash, "-c", keysScript, "skiff-keys")
	cmd.Stdin = bytes.NewReader(stream)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestKeysScriptWritesKeysBackToBack(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "run", "keys") // created by the script
	other := filepath.Join(dir, "other")
	os.Mkdir(other, 0o755)
	os.WriteFile(filepath.Join(other, "old"), []byte("previous"), 0o644)
	// Contents that would trip a reader that reads ahead or stops at a
	// newline: binary, newlines, a NUL, something that looks like a header.
	contents := map[string]string{
		"a":   "first\nkey a /x root root 0600 3\nend 1\n",
		"b.1": "\x00\xff\nsecond",
		"c":   "",
		"old": strings.Repeat("x", 100000),
	}
	ks := []keys.Key{
		keys.New(keys.Spec{Name: "a", DestDir: dest, User: "daemon", Group: "bin", Permissions: "0640"}, []byte(contents["a"])),
		keys.New(keys.Spec{Name: "b.1", DestDir: dest, User: "root", Group: "root", Permissions: "0600"}, []byte(contents["b.1"])),
		keys.New(keys.Spec{Name: "c", DestDir: dest, User: "root", Group: "root", Permissions: "400"}, nil),
		keys.New(keys.Spec{Name: "old", DestDir: other, User: "root", Group: "root", Permissions: "0600"}, []byte(contents["old"])),
	}
	frame, err := keys.Frame(ks)
	if err != nil {
		t.Fatal(err)
	}
	out, code := runKeys(t, frame)
	if code != 0 || strings.TrimSpace(out) != "wrote 4" {
		t.Fatalf("exit %d: %s", code, out)
	}
	st, err := os.Stat(dest)
	if err != nil || st.Mode().Perm() != 0o750 {
		t.Errorf("destDir: %v, mode %v; want 0750", err, st.Mode())
	}
	for _, k := range ks {
		p := filepath.Join(k.DestDir, k.Name)
		b, err := os.ReadFile(p)
		if err != nil || string(b) != contents[k.Name] {
			t.Errorf("%s: %v, %d bytes, want %d", p, err, len(b), len(contents[k.Name]))
		}
		st, _ := os.Stat(p)
		want := map[string]os.FileMode{"a": 0o640, "b.1": 0o600, "c": 0o400, "old": 0o600}[k.Name]
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), want)
		}
		// Owners are set when the script runs as root (as on a host).
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && os.Getuid() == 0 {
			uid, gid := map[string]uint32{"a": 1}[k.Name], map[string]uint32{"a": 2}[k.Name]
			if sys.Uid != uid || sys.Gid != gid {
				t.Errorf("%s: owner %d:%d, want %d:%d", p, sys.Uid, sys.Gid, uid, gid)
			}
		}
	}
	for _, d := range []string{dest, other} {
		left, _ := filepath.Glob(filepath.Join(d, ".skiff-key.*"))
		if len(left) > 0 {
			t.Errorf("temporary files left: %v", left)
		}
	}
}

func TestKeysScriptRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	enc := "c2VjcmV0" // "secret"
	for _, tc := range []struct {
		name   string
		stream string
		code   int
	}{
		{"relative dir", "key a run/keys root root 0600 6\n" + enc + "\nend 1\n", 2},
		{"dir with ..", "key a " + dir + "/../x root root 0600 6\n" + enc + "\nend 1\n", 2},
		{"name ..", "key .. " + dir + " root root 0600 6\n" + enc + "\nend 1\n", 2},
		{"name with /", "key a/b " + dir + " root root 0600 6\n" + enc + "\nend 1\n", 2},
		{"bad user", "key a " + dir + " r;oot root 0600 6\n" + enc + "\nend 1\n", 2},
		{"bad perms", "key a " + dir + " root root 0900 6\n" + enc + "\nend 1\n", 2},
		{"extra field", "key a " + dir + " root root 0600 6 x\n" + enc + "\nend 1\n", 2},
		{"bad line", "hello\n", 2},
		{"wrong count", "key a " + dir + " root root 0600 6\n" + enc + "\nend 2\n", 2},
		{"wrong length", "key a " + dir + " root root 0600 7\n" + enc + "\nend 1\n", 1},
		{"cut stream", "key a " + dir + " root root 0600 6\n" + enc + "\n", 1},
		{"cut before content", "key a " + dir + " root root 0600 6\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runKeys(t, []byte(tc.stream))
			if code != tc.code {
				t.Errorf("exit %d, want %d: %s", code, tc.code, out)
			}
			if strings.Contains(out, "secret") || strings.Contains(out, enc) {
				t.Errorf("the output shows the content: %s", out)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) > 0 {
				t.Errorf("files written: %v", entries)
			}
		})
	}
}

func TestKeysScriptShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Skip("shellcheck is not installed")
	}
	out, err := exec.Command("shellcheck", "-S", "warning", "-s", "sh", "keys.sh").CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck keys.sh: %v\n%s", err, out)
	}
}

// TestKeysScriptGivesRootGroupAsGID0 pins that colmena's default group
// "root" reaches chown as group 0: nix-darwin has no group named root (its
// group 0 is wheel), and chown root:root would fail there.
func TestKeysScriptGivesRootGroupAsGID0(t *testing.T) {
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Skip("dash is not installed")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	log := filepath.Join(dir, "chown.log")
	os.Mkdir(bin, 0o755)
	fakes := map[string]string{
		"id":    "#!/bin/sh\necho 0\n",
		"chown": "#!/bin/sh\necho \"$1\" >>" + log + "\n",
	}
	for name, body := range fakes {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dest := filepath.Join(dir, "keys")
	frame, err := keys.Frame([]keys.Key{
		keys.New(keys.Spec{Name: "a", DestDir: dest, User: "root", Group: "root", Permissions: "0600"}, []byte("x")),
		keys.New(keys.Spec{Name: "b", DestDir: dest, User: "nobody", Group: "staff", Permissions: "0600"}, []byte("y")),
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(dash, "-c", keysScript, "skiff-keys")
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	cmd.Stdin = bytes.NewReader(frame)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	got, _ := os.ReadFile(log)
	if want := "root:0\nroot:0\nnobody:staff\n"; string(got) != want {
		t.Errorf("chown got\n%s\nwant\n%s", got, want)
	}
}
