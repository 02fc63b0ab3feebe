package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/flake"
)

func TestCompletionScripts(t *testing.T) {
	for _, tc := range []struct{ shell, want string }{
		{"bash", "__start_skiff"},
		{"zsh", "#compdef skiff"},
		{"fish", "complete -c skiff"},
	} {
		code, out, stderr := run("completion", tc.shell)
		if code != 0 || !strings.Contains(out, tc.want) || !strings.Contains(out, "__complete") {
			t.Errorf("completion %s: exit %d, lacks %q or __complete\n%s", tc.shell, code, tc.want, stderr)
		}
	}
	if code, _, _ := run("completion", "tcsh"); code != ExitUsage {
		t.Errorf("completion tcsh: exit %d, want 2", code)
	}
	if _, err := exec.LookPath("bash"); err == nil {
		_, script, _ := run("completion", "bash")
		cmd := exec.Command("bash", "-n")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("bash -n: %v\n%s", err, out)
		}
	}
	// The scripts ask skiff itself (skiff __complete WORDS...): the first
	// word completes to every command.
	_, out, _ := run("__complete", "")
	for _, c := range newRoot(&globals{}).Commands() {
		if !c.Hidden && !strings.Contains(out, "\n"+c.Name()+"\t") && !strings.HasPrefix(out, c.Name()+"\t") {
			t.Errorf("skiff __complete \"\" lacks command %s:\n%s", c.Name(), out)
		}
	}
}

func TestHostCandidates(t *testing.T) {
	hosts := []flake.Named{
		{Name: "db1", Tags: []string{"db"}},
		{Name: "web1", Tags: []string{"web", "eu"}},
		{Name: "web2", Tags: []string{"web"}},
		{Name: "mail"},
	}
	for _, tc := range []struct {
		name       string
		given      []string
		toComplete string
		tags       bool
		want       []string
	}{
		{"all", nil, "", true, []string{"db1\ttags: db", "web1\ttags: web, eu", "web2\ttags: web", "mail", "@db\tdb1", "@eu\tweb1", "@web\tweb1, web2"}},
		{"no tags", nil, "", false, []string{"db1\ttags: db", "web1\ttags: web, eu", "web2\ttags: web", "mail"}},
		{"prefix", nil, "we", true, []string{"web1\ttags: web, eu", "web2\ttags: web"}},
		{"tag prefix", nil, "@w", true, []string{"@web\tweb1, web2"}},
		{"given left out", []string{"web1", "@db"}, "", true, []string{"db1\ttags: db", "web2\ttags: web", "mail", "@eu\tweb1", "@web\tweb1, web2"}},
		{"nothing", nil, "x", true, nil},
	} {
		got := hostCandidates(hosts, tc.given, tc.toComplete, tc.tags)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

// exampleFlake copies examples/fleet (a path flake: no git) to a
// temporary directory.
func exampleFlake(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fleet")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("..", "..", "examples", "fleet"))); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "generation"))
	os.Remove(filepath.Join(dir, "overrides.nix"))
	return dir
}

// TestCompleteHostsFromFlake completes host names and tags of the example
// fleet evaluated by real nix; the second TAB is served from the cache (no
// nix command in the -x trace) until a .nix file of the flake changes.
func TestCompleteHostsFromFlake(t *testing.T) {
	if _, err := exec.LookPath("nix"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("nix is not installed")
		}
		t.Skip("nix is not installed")
	}
	fleet := exampleFlake(t)
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("HOME", t.TempDir())
	complete := func(words ...string) (string, int) {
		t.Helper()
		code, out, stderr := run(append([]string{"__complete", "-x", "--flake", fleet}, words...)...)
		if code != 0 {
			t.Fatalf("__complete %q: exit %d\n%s", words, code, stderr)
		}
		evals := strings.Count(stderr, "nix --extra-experimental-features")
		return out, evals
	}
	want := "db1\ttags: db\nweb1\ttags: web\nweb2\ttags: web\n@db\tdb1\n@web\tweb1, web2\n:4\n"
	out, evals := complete("deploy", "")
	if out != want || evals != 1 {
		t.Errorf("first completion: %d nix evaluations, output:\n%s\nwant:\n%s", evals, out, want)
	}
	out, evals = complete("status", "web1", "")
	if want := "db1\ttags: db\nweb2\ttags: web\n@db\tdb1\n@web\tweb1, web2\n:4\n"; out != want || evals != 0 {
		t.Errorf("second completion: %d nix evaluations (want 0: cached), output:\n%s", evals, out)
	}
	out, evals = complete("deploy", "--on", "web1,@")
	if want := "web1,@db\tdb1\nweb1,@web\tweb1, web2\n:6\n"; out != want || evals != 0 {
		t.Errorf("--on completion: %d nix evaluations, output:\n%s", evals, out)
	}
	// A new host in flake.nix: the cache no longer applies.
	src, err := os.ReadFile(filepath.Join(fleet, "flake.nix"))
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(src), "db1 = host \"db1\"", "db2 = host \"db2\" { units = dbUnits; deployment.tags = [ \"db\" ]; };\n        db1 = host \"db1\"", 1)
	if edited == string(src) {
		t.Fatal("examples/fleet/flake.nix no longer defines db1 as expected by this test")
	}
	if err := os.WriteFile(filepath.Join(fleet, "flake.nix"), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	out, evals = complete("deploy", "db")
	if want := "db1\ttags: db\ndb2\ttags: db\n:4\n"; out != want || evals != 1 {
		t.Errorf("after editing flake.nix: %d nix evaluations (want 1), output:\n%s", evals, out)
	}
	// The nodes of a colmena hive (colmenaHive) are hosts too.
	hive := strings.Replace(edited, "      nixosConfigurations = {", "      colmenaHive.nodes.dbc = host \"dbc\" { deployment.tags = [ \"db\" ]; };\n      nixosConfigurations = {", 1)
	if err := os.WriteFile(filepath.Join(fleet, "flake.nix"), []byte(hive), 0o644); err != nil {
		t.Fatal(err)
	}
	out, evals = complete("deploy", "db")
	if want := "db1\ttags: db\ndb2\ttags: db\ndbc\ttags: db\n:4\n"; out != want || evals != 1 {
		t.Errorf("with a colmena hive: %d nix evaluations (want 1), output:\n%s", evals, out)
	}
	files, _ := filepath.Glob(filepath.Join(cache, "skiff", "hosts-*.json"))
	if len(files) != 1 {
		t.Errorf("cache holds %d files for one flake, want 1: %v", len(files), files)
	}
}

func TestManPages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man")
	t.Setenv("SOURCE_DATE_EPOCH", "315532800")
	if code, _, stderr := run("man", dir); code != 0 {
		t.Fatalf("skiff man: exit %d\n%s", code, stderr)
	}
	for page, want := range map[string]string{
		"skiff.1":        ".TH \"SKIFF\" \"1\" \"Jan 1980\"",
		"skiff-deploy.1": "--confirm-timeout",
		"skiff-diff.1":   "skiff-diff - ",
		"skiff-status.1": "skiff-status - ",
	} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Errorf("skiff man wrote no %s: %v", page, err)
			continue
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q:\n%.400s", page, want, b)
		}
		if strings.Contains(string(b), "Auto generated") {
			t.Errorf("%s carries cobra's dated auto-generated tag", page)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "skiff-__complete.1")); err == nil {
		t.Error("a man page for the hidden __complete command")
	}
}
