package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// builtLine mirrors "skiff build --json".
type builtLine struct {
	Host        string `json:"host"`
	Path        string `json:"path"`
	Platform    string `json:"platform"`
	ClosureSize int64  `json:"closure_size"`
	OutLink     string `json:"out_link"`
	Error       *struct {
		Class   string `json:"class"`
		Message string `json:"message"`
		Hint    string `json:"hint"`
	} `json:"error"`
}

func parseBuilt(t *testing.T, stdout string) map[string]builtLine {
	t.Helper()
	out := map[string]builtLine{}
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var b builtLine
		if err := json.Unmarshal([]byte(l), &b); err != nil {
			t.Fatalf("build --json line %q: %v", l, err)
		}
		out[b.Host] = b
	}
	return out
}

// closureSize asks nix path-info -S --json, reading both its 2.8 list form
// and the newer object form.
func closureSize(t *testing.T, path string) int64 {
	t.Helper()
	out, err := exec.Command("nix", "--extra-experimental-features", "nix-command", "path-info", "-S", "--json", path).Output()
	if err != nil {
		t.Fatalf("nix path-info -S %s: %v", path, err)
	}
	var list []struct {
		Path        string `json:"path"`
		ClosureSize int64  `json:"closureSize"`
	}
	if json.Unmarshal(out, &list) == nil && len(list) == 1 {
		return list[0].ClosureSize
	}
	var byPath map[string]struct {
		ClosureSize int64 `json:"closureSize"`
	}
	if err := json.Unmarshal(out, &byPath); err != nil {
		t.Fatalf("nix path-info -S printed %s", out)
	}
	return byPath[path].ClosureSize
}

// traced counts the -x lines ("+ [KEY=VALUE...] PROGRAM ARGS") running
// program with sub among its arguments.
func traced(stderr, program, sub string) int {
	n := 0
	for _, l := range strings.Split(stderr, "\n") {
		rest, ok := strings.CutPrefix(l, "+ ")
		if !ok {
			continue
		}
		for {
			word, after, _ := strings.Cut(rest, " ")
			if !strings.Contains(word, "=") {
				break
			}
			rest = after
		}
		if strings.HasPrefix(rest, program+" ") && strings.Contains(rest, sub) {
			n++
		}
	}
	return n
}

// Build evaluates once, builds once, prints each system's path and
// touches no host: no ssh at all.
func TestBuildPrintsPathsAndTouchesNoHost(t *testing.T) {
	// The hosts do not exist: build needs none.
	// Generations of this run only: systems that no earlier run built.
	gen := time.Now().UnixNano() % 1e12
	dir := writeFlake(t, host("nb1", fmt.Sprintf(`generation = %d; deployment.tags = [ "nb" ];`, gen))+
		host("nb2", fmt.Sprintf(`generation = %d; deployment.tags = [ "nb" ];`, gen+1))+host("other1", ""))
	r := skiff(t, "-x", "build", "--on", "@nb", "--flake", dir)
	wantCode(t, r, 0)
	if n := traced(r.stderr, "ssh", ""); n != 0 {
		t.Errorf("build ran ssh %d time(s)", n)
	}
	if e, b := traced(r.stderr, "nix", " eval "), traced(r.stderr, "nix", " build "); e != 1 || b != 1 {
		t.Errorf("build ran nix eval %d time(s) and nix build %d time(s), want once each", e, b)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("stdout has %d lines, want one per host:\n%s", len(lines), r.stdout)
	}
	paths := map[string]string{}
	for _, l := range lines {
		h, p, ok := strings.Cut(l, " ")
		if !ok || !strings.HasPrefix(p, "/nix/store/") || !strings.HasSuffix(p, "-nixos-system-"+h+"-24.05.20240601.lab") {
			t.Errorf("stdout line %q is not HOST PATH", l)
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: the system was not built: %v", h, err)
		}
		paths[h] = p
	}
	if paths["nb1"] == "" || paths["nb2"] == "" {
		t.Errorf("want nb1 and nb2 only:\n%s", r.stdout)
	}

	// Built already: one nix path-info reads the closures, and no nix
	// build (nor its nix --version) runs.
	again := skiff(t, "-x", "build", "--on", "@nb", "--flake", dir)
	wantCode(t, again, 0)
	if again.stdout != r.stdout {
		t.Errorf("the second build printed\n%s\nwant\n%s", again.stdout, r.stdout)
	}
	if b, v, p := traced(again.stderr, "nix", " build "), traced(again.stderr, "nix", "--version"), traced(again.stderr, "nix", " path-info "); b != 0 || v != 0 || p != 1 {
		t.Errorf("a build of systems built already ran nix build %d, nix --version %d and nix path-info %d time(s), want 0, 0, 1:\n%s", b, v, p, again.stderr)
	}
	wantContains(t, "progress", again.stderr, "2 system(s) built already")

	// --json and --out-link: real garbage collector roots.
	links := filepath.Join(t.TempDir(), "roots")
	r = skiff(t, "build", "nb1", "nb2", "--json", "--out-link", links, "--flake", dir)
	wantCode(t, r, 0)
	built := parseBuilt(t, r.stdout)
	if len(built) != 2 {
		t.Fatalf("build --json has %d hosts, want 2:\n%s", len(built), r.stdout)
	}
	roots, err := exec.Command("nix-store", "--gc", "--print-roots").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"nb1", "nb2"} {
		b := built[h]
		if b.Path != paths[h] || b.Platform != "x86_64-linux" || b.Error != nil {
			t.Errorf("%s: %+v, want path %s", h, b, paths[h])
		}
		if want := closureSize(t, b.Path); b.ClosureSize != want || want == 0 {
			t.Errorf("%s: closure_size %d, nix path-info -S says %d", h, b.ClosureSize, want)
		}
		link := filepath.Join(links, h)
		if got, err := os.Readlink(link); err != nil || got != b.Path || b.OutLink != link {
			t.Errorf("%s: out link %q -> %q (%v), want -> %s", h, b.OutLink, got, err, b.Path)
		}
		if !strings.Contains(string(roots), link+" -> "+b.Path) {
			t.Errorf("%s: %s is not a garbage collector root:\n%s", h, link, roots)
		}
	}

	// Bad selectors are refused before anything is built.
	for _, sel := range []string{"nosuch", "@nosuchtag", "nb1;id"} {
		r = skiff(t, "-x", "build", sel, "--flake", dir)
		wantCode(t, r, 2)
		if traced(r.stderr, "nix", " build ") != 0 || r.stdout != "" {
			t.Errorf("build %q: built or printed something", sel)
		}
	}
}

// A host whose system fails to build does not stop the others; its error
// is classified like deploy's.
func TestBuildOneBrokenHost(t *testing.T) {
	broken := `      broken = { config = { system.build.toplevel = derivation {
        name = "nixos-system-broken"; system = "x86_64-linux"; builder = "/bin/sh";
        args = [ "-c" "echo 'oh no' >&2; exit 1" ]; }; }; };
`
	dir := writeFlake(t, broken+host("fine1", ""))
	r := skiff(t, "build", "--flake", dir)
	wantCode(t, r, 3)
	if !strings.HasPrefix(r.stdout, "fine1 /nix/store/") || strings.Contains(r.stdout, "broken") {
		t.Errorf("stdout, want fine1's path only:\n%s", r.stdout)
	}
	wantContains(t, "stderr", r.stderr, "skiff: error: broken: its system failed to build", "oh no", "skiff: hint: see the whole log with \"nix-store --read-log ")

	r = skiff(t, "build", "--json", "--flake", dir)
	wantCode(t, r, 3)
	built := parseBuilt(t, r.stdout)
	if b := built["broken"]; b.Error == nil || b.Error.Class != "build" || b.Path != "" || b.Error.Hint == "" {
		t.Errorf("broken: %+v", b)
	}
	if b := built["fine1"]; b.Error != nil || b.Path == "" || b.ClosureSize == 0 {
		t.Errorf("fine1: %+v", b)
	}
}
