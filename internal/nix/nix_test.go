package nix

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/command"
)

// PathInfoObject: both shapes of nix path-info --json (2.26's with the
// fields it adds).
func TestParsePathInfoBothShapes(t *testing.T) {
	old := `[{"path":"/nix/store/b-x","narHash":"sha256-H+0=","narSize":10,"references":["/nix/store/a-y"],"deriver":"/nix/store/d-x.drv"},{"path":"/nix/store/a-y","narSize":5,"references":[]}]`
	newer := `{"/nix/store/b-x":{"ca":null,"deriver":"/nix/store/d-x.drv","narHash":"sha256-H+0=","narSize":10,"references":["/nix/store/a-y"],"registrationTime":1796172526,"signatures":[],"ultimate":true},"/nix/store/a-y":{"narSize":5,"references":[]},"/nix/store/c-gone":null}`
	want := []PathInfo{
		{Path: "/nix/store/a-y", NarSize: 5, References: []string{}},
		{Path: "/nix/store/b-x", NarSize: 10, NarHash: "sha256-H+0=", References: []string{"/nix/store/a-y"}, Deriver: "/nix/store/d-x.drv"},
	}
	for name, in := range map[string]string{"2.8": old, "2.19+": newer} {
		got, err := ParsePathInfo([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s: (-want +got)\n%s", name, d)
		}
	}
	if _, err := ParsePathInfo([]byte("garbage")); err == nil {
		t.Error("garbage parsed")
	}
}

func TestParseBuildFailure(t *testing.T) {
	stderr := `building '/nix/store/aaa-broken.drv'...
error: builder for '/nix/store/aaa-broken.drv' failed with exit code 1;
       last 3 log lines:
       > compiling
       > oh no
       > giving up
       For full logs, run 'nix log /nix/store/aaa-broken.drv'.
error: 1 dependencies of derivation '/nix/store/bbb-system.drv' failed to build
`
	drv, tail := ParseBuildFailure(stderr)
	if drv != "/nix/store/aaa-broken.drv" {
		t.Errorf("drv = %q", drv)
	}
	if want := "  > compiling\n  > oh no\n  > giving up"; tail != want {
		t.Errorf("tail = %q, want %q", tail, want)
	}
}

func TestArgvCarriesFeaturesAndOptions(t *testing.T) {
	n := &Nix{Options: []string{"substituters="}}
	got := n.CopyArgs("ssh://root@h", "/nix/store/p")
	want := []string{"nix", "--extra-experimental-features", "nix-command flakes", "--option", "substituters", "", "copy", "--to", "ssh://root@h", "/nix/store/p"}
	if d := cmp.Diff(want, got); d != "" {
		t.Error(d)
	}
}

// PathInfoJSONFormat: what nix says when it refuses the form of nix
// path-info that skiff chose, and what it says when it only warns.
func TestRefusesJSONFormat(t *testing.T) {
	for _, tc := range []struct {
		name, stderr string
		want         bool
	}{
		{"a release without the flag", "error: unrecognised flag '--json-format'\nTry 'nix --help' for more information.\n", true},
		{"a release that requires it", "error: '--json' requires '--json-format'; please specify '--json-format 1' or '--json-format 2'\n", true},
		{"a release that warns", "warning: '--json' without '--json-format' is deprecated; please specify '--json-format 1' or '--json-format 2'. This will become an error in a future release.\n", false},
		{"a release that warns, and an invalid path", "warning: '--json' without '--json-format' is deprecated; please specify '--json-format 1' or '--json-format 2'.\nerror: path '/nix/store/x-y' is not valid\n", false},
	} {
		err := &command.Error{Argv: []string{"nix"}, ExitCode: 1, Stderr: tc.stderr, Err: errors.New("exit status 1")}
		if got := RefusesJSONFormat(fmt.Errorf("wrapped: %w", err)); got != tc.want {
			t.Errorf("%s: RefusesJSONFormat = %v, want %v", tc.name, got, tc.want)
		}
	}
	if RefusesJSONFormat(errors.New("json-format error")) {
		t.Error("an error that is not nix's refused the format")
	}
}

// fakeNix puts on PATH a nix that answers path-info as a release that
// requires --json-format would (2.34's records, with version and
// storeDir), and logs its arguments; it returns the log.
func fakeNix(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	script := `#!/bin/sh
echo "$*" >>` + log + `
case " $* " in
*" --json-format 1 "*) printf '%s\n' '{"/nix/store/b-x":{"ca":null,"deriver":null,"narHash":"sha256-H+0=","narSize":10,"references":["/nix/store/a-y"],"registrationTime":1,"signatures":[],"storeDir":"/nix/store","ultimate":false,"version":1},"/nix/store/a-y":{"narHash":"sha256-H+0=","narSize":5,"references":[],"storeDir":"/nix/store","version":1}}' ;;
*) echo "error: '--json' requires '--json-format'" >&2; exit 1 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "nix"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return log
}

// A nix that requires --json-format gets it after its refusal, and from
// then on at once; its records read as 2.26's do.
func TestClosureTakesTheFormNixRequires(t *testing.T) {
	log := fakeNix(t)
	n := &Nix{Run: &command.Runner{}}
	want := []PathInfo{
		{Path: "/nix/store/a-y", NarSize: 5, NarHash: "sha256-H+0=", References: []string{}},
		{Path: "/nix/store/b-x", NarSize: 10, NarHash: "sha256-H+0=", References: []string{"/nix/store/a-y"}},
	}
	for round := 1; round <= 2; round++ {
		got, err := n.Closure(context.Background(), "/nix/store/b-x")
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("round %d: (-want +got)\n%s", round, d)
		}
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	runs := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(runs) != 3 || strings.Contains(runs[0], "--json-format") || !strings.Contains(runs[1], "--json-format 1") || !strings.Contains(runs[2], "--json-format 1") {
		t.Errorf("nix ran %q; want the form without the flag, then with it twice", runs)
	}
}

// The real nix of this machine (2.8, which has no --json-format), taken
// for a release that has the flag: it refuses it, and the closure is read
// without it, once for every later call.
func TestClosureTakesTheFormThisNixTakes(t *testing.T) {
	infos := exportFixture(t)
	var trace bytes.Buffer
	v := PathInfoJSONFormat.Since
	n := &Nix{Run: &command.Runner{Trace: &trace}, version: &v}
	real, err := n.Version(context.Background())
	if err != nil || real != v {
		t.Fatalf("Version = %v, %v", real, err)
	}
	out, err := exec.Command("nix", "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	has, err := ParseVersion(string(out))
	if err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 2; round++ {
		got, err := n.Closure(context.Background(), infos[len(infos)-1].Path, infos[0].Path)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if len(got) != len(infos) {
			t.Errorf("round %d: %d records, want %d", round, len(got), len(infos))
		}
	}
	runs := strings.Count(trace.String(), " path-info ")
	flagged := strings.Count(trace.String(), "--json-format 1")
	if has.Has(PathInfoJSONFormat) {
		if runs != 2 || flagged != 2 {
			t.Errorf("nix %v ran path-info %d times, %d with the flag; want 2 and 2:\n%s", has, runs, flagged, trace.String())
		}
		return
	}
	if runs != 3 || flagged != 1 {
		t.Errorf("nix %v ran path-info %d times, %d with the flag; want 3 and 1:\n%s", has, runs, flagged, trace.String())
	}
}

// AskClosure (the build host's read, and Closure's): the form asked
// first, and the other one only when nix refuses the first, once.
func TestAskClosureTakesTheOtherFormOnRefusal(t *testing.T) {
	refuse := func(stderr string) error {
		return &command.Error{Argv: []string{"nix"}, ExitCode: 1, Stderr: stderr, Err: errors.New("exit status 1")}
	}
	for _, tc := range []struct {
		name     string
		nix      func(flagged bool) error // nil: answers
		first    bool
		want     []bool // the forms asked, in order
		wantForm bool
		wantErr  bool
	}{
		{"a release without the flag, asked without", func(f bool) error { return nil }, false, []bool{false}, false, false},
		{"a release without the flag, asked with", func(f bool) error {
			if f {
				return refuse("error: unrecognised flag '--json-format'")
			}
			return nil
		}, true, []bool{true, false}, false, false},
		{"a release that requires it", func(f bool) error {
			if !f {
				return refuse("error: '--json' requires '--json-format'")
			}
			return nil
		}, false, []bool{false, true}, true, false},
		{"an invalid path", func(f bool) error { return refuse("error: path '/nix/store/x-y' is not valid") }, false, []bool{false}, false, true},
	} {
		var asked []bool
		_, form, err := AskClosure(func(sub []string) (command.Result, error) {
			flagged := strings.Contains(strings.Join(sub, " "), "--json-format 1")
			asked = append(asked, flagged)
			return command.Result{Stdout: []byte("{}")}, tc.nix(flagged)
		}, tc.first)
		if !cmp.Equal(asked, tc.want) || (err != nil) != tc.wantErr || (err == nil && form != tc.wantForm) {
			t.Errorf("%s: asked %v, form %v, err %v; want %v, %v, error %v", tc.name, asked, form, err, tc.want, tc.wantForm, tc.wantErr)
		}
	}
}
