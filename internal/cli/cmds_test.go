package cli

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/skiffdeploy/skiff/internal/fault"
)

// Every command that names hosts takes --on, with the same meaning as its
// host arguments.
func TestEveryHostCommandTakesOn(t *testing.T) {
	root := newRoot(&globals{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, stdin: strings.NewReader("")})
	want := map[string]bool{"deploy": true, "diff": true, "status": true, "doctor": true, "gc": true,
		"generations": true, "rollback": true, "history": true, "build": true, "exec": true, "upload-keys": true}
	seen := map[string]bool{}
	for _, c := range root.Commands() {
		names := strings.Contains(c.Use, "HOST")
		if names != want[c.Name()] {
			t.Errorf("%s: names hosts %v, want %v (Use %q)", c.Name(), names, want[c.Name()], c.Use)
		}
		if !names {
			continue
		}
		seen[c.Name()] = true
		f := c.Flags().Lookup("on")
		if f == nil {
			t.Errorf("%s lacks --on", c.Name())
			continue
		}
		if c.Annotations[namesHosts] != "true" {
			t.Errorf("%s has its own --on instead of withOn's", c.Name())
		}
	}
	for n := range want {
		if !seen[n] {
			t.Errorf("command %s not found", n)
		}
	}
}

func TestOnJoinsTheHostArguments(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		hosts, rest []string
		dash        bool
	}{
		{args: []string{"web1"}, hosts: []string{"web1"}},
		{args: []string{"--on", "web*,@db"}, hosts: []string{"web*", "@db"}},
		{args: []string{"a", "--on", "b", "--on", "c"}, hosts: []string{"a", "b", "c"}},
		{args: []string{"a", "--on", "b", "--", "echo", "--on", "x"}, hosts: []string{"a", "b"}, rest: []string{"echo", "--on", "x"}, dash: true},
		{args: []string{"--on", "b", "--", "true"}, hosts: []string{"b"}, rest: []string{"true"}, dash: true},
		{args: []string{"--"}, hosts: []string{}, rest: []string{}, dash: true},
	} {
		var hosts, rest []string
		var dash bool
		c := withOn(&cobra.Command{Use: "x [HOST...]", RunE: func(cmd *cobra.Command, args []string) error {
			hosts, rest, dash = splitDash(cmd, args)
			return nil
		}})
		c.SetArgs(tc.args)
		if err := c.Execute(); err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if hosts == nil {
			hosts = []string{}
		}
		if rest == nil && tc.rest != nil {
			rest = []string{}
		}
		if diff := cmp.Diff(tc.hosts, hosts); diff != "" {
			t.Errorf("%q: hosts (-want +got):\n%s", tc.args, diff)
		}
		if diff := cmp.Diff(tc.rest, rest); diff != "" || dash != tc.dash {
			t.Errorf("%q: after -- %q (dash %v), want %q (dash %v)", tc.args, rest, dash, tc.rest, tc.dash)
		}
	}
}

// --on counts as a host argument for the commands that require one.
func TestOnSatisfiesRequiredHosts(t *testing.T) {
	code, _, stderr := run("rollback")
	if code != ExitUsage {
		t.Fatalf("rollback without hosts: exit %d\n%s", code, stderr)
	}
	code, _, stderr = run("rollback", "--on", "web1", "--flake", "/nonexistent/flake")
	if code != ExitUsage || strings.Contains(stderr, "requires at least") || !strings.Contains(stderr, "/nonexistent/flake") {
		t.Errorf("rollback --on web1: exit %d, want the flake refused, not the arguments:\n%s", code, stderr)
	}
	code, _, stderr = run("history", "web1", "--on", "web2")
	if code != ExitUsage {
		t.Errorf("history with two hosts: exit %d\n%s", code, stderr)
	}
}

func TestBuildAndExecUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"exec", "web1", "uptime"},
		{"exec", "web1", "--"},
		{"exec", "--"},
		{"exec", "web1;id", "--", "true"},
		{"exec", "--on", "web1;id", "--", "true"},
		{"exec", "--parallel", "0", "web1", "--", "true"},
		{"exec", "--target-user", "a b", "web1", "--", "true"},
		{"build", "web1;id"},
		{"build", "--on", "@bad tag"},
		{"build", "web1", "--flake", "/nonexistent/flake"},
		{"status", "--on", "web1;id"},
		{"version", "extra"},
	} {
		code, stdout, stderr := run(args...)
		if code != ExitUsage {
			t.Errorf("%q: exit %d, want 2\n%s", args, code, stderr)
		}
		if stdout != "" {
			t.Errorf("%q: printed on stdout:\n%s", args, stdout)
		}
		if !strings.HasPrefix(stderr, "skiff: error: ") || !strings.Contains(stderr, "skiff: hint: ") {
			t.Errorf("%q: stderr is not an error and a hint:\n%s", args, stderr)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, out, stderr := run(args...)
		if code != 0 {
			t.Fatalf("%q: exit %d\n%s", args, code, stderr)
		}
		if !strings.HasPrefix(out, "skiff ") || !strings.Contains(out, runtime.Version()) || strings.Count(out, "\n") != 1 {
			t.Errorf("%q printed %q", args, out)
		}
	}
	code, out, _ := run("version", "--json")
	var v buildVersion
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Version == "" || v.Go != runtime.Version() {
		t.Errorf("version --json: exit %d, %v: %q", code, err, out)
	}

	// What a release build stamps with -ldflags -X wins.
	version, revision = "v1.2.3", "0123abcd"
	defer func() { version, revision = "", "" }()
	_, out, _ = run("--version")
	if !strings.HasPrefix(out, "skiff v1.2.3 (revision 0123abcd") {
		t.Errorf("--version with the release variables set: %q", out)
	}
}

func TestVersionFromBuildInfo(t *testing.T) {
	base := buildVersion{Version: "(devel)", Go: "go1.0", Platform: "linux/amd64"}
	for _, tc := range []struct {
		info debug.BuildInfo
		want string
	}{
		{debug.BuildInfo{}, "skiff (devel) go1.0 linux/amd64"},
		{debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "v0.3.0"}}, "skiff v0.3.0 go1.26.1 linux/amd64"},
		{debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "b82c934"}, {Key: "vcs.time", Value: "2026-12-01T23:00:00Z"}, {Key: "vcs.modified", Value: "true"},
		}}, "skiff (devel) (revision b82c934, modified, 2026-12-01T23:00:00Z) go1.26.1 linux/amd64"},
		{debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "b82c934"}, {Key: "vcs.modified", Value: "false"}}},
			"skiff (devel) (revision b82c934) go1.0 linux/amd64"},
	} {
		if got := versionFrom(&tc.info, base).String(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestPrefixWriterKeepsLinesWhole(t *testing.T) {
	var out bytes.Buffer
	w := prefixWriter("web1| ", &out)
	for _, s := range []string{"a", "b\nc", "\n\n", "last"} {
		w.Write([]byte(s))
	}
	w.Flush()
	w.Flush()
	if got, want := out.String(), "web1| ab\nweb1| c\nweb1| \nweb1| last\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// The variables a release build stamps keep their names: the release
// script sets exactly these with -ldflags -X.
func TestReleaseBuildStampsVersionAndRevision(t *testing.T) {
	if testing.Short() {
		t.Skip("builds skiff")
	}
	bin := filepath.Join(t.TempDir(), "skiff")
	ldflags := "-X github.com/skiffdeploy/skiff/internal/cli.version=v0.0.0-test -X github.com/skiffdeploy/skiff/internal/cli.revision=feedc0de"
	if out, err := exec.Command("go", "build", "-ldflags", ldflags, "-o", bin, "../../cmd/skiff").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, arg := range []string{"--version", "version"} {
		out, err := exec.Command(bin, arg).Output()
		if err != nil {
			t.Fatalf("skiff %s: %v", arg, err)
		}
		if want := "skiff v0.0.0-test (revision feedc0de"; !strings.HasPrefix(string(out), want) {
			t.Errorf("skiff %s printed %q, want %q...", arg, out, want)
		}
	}
}

// Host arguments written as flake references (nixos-rebuild's --flake
// .#web1, deploy-rs's deploy .#web1) give the flake and the selection.
func TestFlakeReferencesAmongTheHosts(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args  []string
		hosts []string
		flake string
		err   string
	}{
		{args: []string{"web1"}, hosts: []string{"web1"}, flake: "."},
		{args: []string{".#web1"}, hosts: []string{"web1"}, flake: "."},
		{args: []string{".#web1", "--on", "@db"}, hosts: []string{"web1", "@db"}, flake: "."},
		{args: []string{dir + "#web*", dir + "#db1"}, hosts: []string{"web*", "db1"}, flake: dir},
		{args: []string{"."}, hosts: []string{}, flake: "."},
		{args: []string{dir + "#"}, hosts: []string{}, flake: dir},
		{args: []string{"--flake", ".#web1"}, hosts: []string{"web1"}, flake: "."},
		{args: []string{"--flake", dir + "#web1", "db1"}, hosts: []string{"web1", "db1"}, flake: dir},
		{args: []string{"--flake", dir, dir + "/#web1"}, hosts: []string{"web1"}, flake: dir + "/"},
		{args: []string{"github:org/infra#web1"}, hosts: []string{"web1"}, flake: "github:org/infra"},
		{args: []string{".#web1", "--", "ls", "/etc#x"}, hosts: []string{"web1", "ls", "/etc#x"}, flake: "."},
		{args: []string{"--flake", dir, ".#web1"}, err: "two flakes: " + dir + " (--flake) and . (argument \".#web1\")"},
		{args: []string{"github:org/a#web1", "github:org/b#web2"}, err: "two flakes"},
	} {
		var hosts []string
		var flake string
		root := &cobra.Command{Use: "skiff", SilenceErrors: true, SilenceUsage: true}
		root.PersistentFlags().StringVar(&flake, "flake", ".", "")
		root.AddCommand(withOn(&cobra.Command{Use: "x [HOST...]", RunE: func(cmd *cobra.Command, args []string) error {
			hosts = args
			return nil
		}}))
		root.SetArgs(append([]string{"x"}, tc.args...))
		err := root.Execute()
		if tc.err != "" {
			fe, ok := fault.As(err)
			if !ok || fe.Class != fault.Usage || !strings.Contains(fe.Msg, tc.err) {
				t.Errorf("%q: got %v, want a usage error with %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if diff := cmp.Diff(tc.hosts, hosts); diff != "" || flake != tc.flake {
			t.Errorf("%q: flake %q (want %q), hosts (-want +got):\n%s", tc.args, flake, tc.flake, diff)
		}
	}
}
