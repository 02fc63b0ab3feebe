package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/skiffdeploy/skiff/internal/lab"
	"github.com/skiffdeploy/skiff/internal/ui"
)

// The store query of a host asks only about the paths that the system the
// last deploy from here left it lacks, with that system as the base the
// host checks: a new system shares most of its closure with the last one.
// A host that lacks the base is asked again about the whole closure.
func TestStoreQueryAsksWhatTheLastSystemLacks(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "qb1"})
	dir := writeFlake(t, host("qb1", "generation = 1;"))
	r := skiffOn(t, l, "deploy", "--magic-rollback=false", "--json", "--flake", dir)
	wantCode(t, r, 0)
	_, first := jsonHost(t, r.stdout, "qb1")

	// The query travels in the session's command (and so in the trace)
	// when the connection is up once the system is known to be built: a
	// run where it was not is tried again with the next generation.
	var second ui.HostJSON
	var asked []string
	var base string
	for gen := 2; asked == nil; gen++ {
		if gen > 4 {
			t.Fatalf("no store query in the session command of root@qb1 in 3 deploys")
		}
		rewriteFlake(t, dir, host("qb1", fmt.Sprintf("generation = %d;", gen)))
		// Built first: on a fresh store the build would race the
		// connection, and the race is not what this test is about.
		wantCode(t, skiffOn(t, l, "build", "--flake", dir), 0)
		r = skiffOn(t, l, "-x", "deploy", "--magic-rollback=false", "--json", "--flake", dir)
		wantCode(t, r, 0)
		if gen > 2 {
			first = second
		}
		_, second = jsonHost(t, r.stdout, "qb1")
		asked, base = queryOf(r.stderr, "root@qb1")
	}
	old, cur := localClosure(t, first.NewPath), localClosure(t, second.NewPath)
	var want []string
	for _, p := range cur {
		if !slices.Contains(old, p) {
			want = append(want, p)
		}
	}
	slices.Sort(asked)
	slices.Sort(want)
	if base != first.NewPath || !slices.Equal(asked, want) || len(want) >= len(cur) {
		t.Errorf("the store query asked about %d path(s) with base %q; want the %d of the %d new closure's the last system lacks, with base %s:\nasked %q\nwant  %q",
			len(asked), base, len(want), len(cur), first.NewPath, asked, want)
	}
	if got := labRead(t, l, "qb1", "readlink", "/run/current-system"); got != second.NewPath {
		t.Errorf("qb1 runs %s, want %s", got, second.NewPath)
	}

	// The cache now says the last deploy left qb1 a system only this
	// machine has: the host lacks the base and is asked about the whole
	// closure, in a round trip more.
	other := writeFlake(t, host("qb1", "generation = 9;"))
	b := skiffOn(t, l, "build", "qb1", "--json", "--flake", other)
	wantCode(t, b, 0)
	stranger := parseBuilt(t, b.stdout)["qb1"].Path
	setLastSystem(t, "qb1", second.NewPath, stranger)
	rewriteFlake(t, dir, host("qb1", "generation = 5;"))
	r = skiffOn(t, l, "-x", "deploy", "--magic-rollback=false", "--flake", dir)
	wantCode(t, r, 0)
	wantContains(t, "progress", r.stderr, "qb1: copy: the host lacks "+stranger+", the system the last deploy from here left it: asking about the whole closure")
	wantContains(t, "summary", r.stdout, fmt.Sprintf("%d -> %d", second.NewGeneration, second.NewGeneration+1))
}

// queryOf is what the store query in the session command of login
// (USER@HOST) in a -x trace asks about: the paths of its input, and its
// last argument (the base system; empty without one). The paths are nil
// when the command carries no query.
func queryOf(stderr, login string) (paths []string, base string) {
	_, first := sessionOf(stderr, login)
	lines := strings.Split(first, "\n")
	for i := 0; i < len(lines); i++ {
		switch {
		case lines[i] == "input 1" && i+1 < len(lines):
			in, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(lines[i+1], ":"))
			if err == nil {
				paths = strings.Fields(string(in))
			}
		case strings.HasPrefix(lines[i], "run "):
			n, _ := strconv.Atoi(strings.TrimPrefix(lines[i], "run "))
			if i+n < len(lines) {
				base = strings.TrimPrefix(lines[i+n], ":")
			}
		}
	}
	return paths, base
}

// localClosure is the closure of path in this machine's store.
func localClosure(t *testing.T, path string) []string {
	t.Helper()
	out, err := exec.Command("nix-store", "-qR", path).Output()
	if err != nil {
		t.Fatalf("nix-store -qR %s: %v", path, err)
	}
	return strings.Fields(string(out))
}

// setLastSystem makes the tests' target cache that says the last deploy
// left host running was say it left it running path.
func setLastSystem(t *testing.T, host, was, path string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(os.Getenv("XDG_CACHE_HOME"), "skiff", "targets-*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]any
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		systems, _ := c["systems"].(map[string]any)
		if systems[host] != was {
			continue
		}
		systems[host] = path
		if b, err = json.Marshal(c); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no target cache says %s runs %s", host, was)
}
