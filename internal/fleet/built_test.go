package fleet

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/nix"
)

// events keeps what a run reports.
type events struct {
	mu   sync.Mutex
	msgs []string
}

func (e *events) Event(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.msgs = append(e.msgs, ev.Msg)
}

// A build whose systems are all in the store already is one nix path-info;
// a system missing from its answer (an error on Nix 2.8, null or left out
// on newer releases) sends the build to nix build, with nothing kept.
func TestBuiltAlready(t *testing.T) {
	const a, b = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-a", "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-b"
	const base = "/nix/store/cccccccccccccccccccccccccccccccc-base"
	hosts := []flake.Host{{Name: "a", OutPath: a}, {Name: "b", OutPath: b}, {Name: "a2", OutPath: a}}
	for _, c := range []struct {
		name   string
		answer string // what the fake nix path-info prints; exit 1 when empty
		want   bool
	}{
		{"both valid (list, Nix 2.8)", `[{"path":"` + a + `","narSize":10,"references":["` + base + `"]},{"path":"` + b + `","narSize":20,"references":["` + base + `"]},{"path":"` + base + `","narSize":5,"references":[]}]`, true},
		{"both valid (object, newer Nix)", `{"` + a + `":{"narSize":10,"references":["` + base + `"]},"` + b + `":{"narSize":20,"references":[]},"` + base + `":{"narSize":5,"references":[]}}`, true},
		{"one invalid (null, newer Nix)", `{"` + a + `":{"narSize":10,"references":[]},"` + b + `":null}`, false},
		{"one left out", `[{"path":"` + a + `","narSize":10,"references":[]}]`, false},
		{"path-info fails (Nix 2.8 on an invalid path)", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			log := filepath.Join(dir, "log")
			script := "#!/bin/sh\necho \"$*\" >>'" + log + "'\n"
			if c.answer == "" {
				script += "echo \"error: path '" + b + "' is not valid\" >&2\nexit 1\n"
			} else {
				script += "cat <<'EOF'\n" + c.answer + "\nEOF\n"
			}
			if err := os.WriteFile(filepath.Join(dir, "nix"), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
			ev := &events{}
			r := newRun(Options{Nix: &nix.Nix{Run: &command.Runner{}}, Reporter: ev})
			got := r.builtAlready(context.Background(), hosts, time.Now())
			if got != c.want {
				t.Fatalf("builtAlready = %v, want %v", got, c.want)
			}
			calls, _ := os.ReadFile(log)
			if n := strings.Count(string(calls), "\n"); n != 1 || !strings.Contains(string(calls), "path-info -r --json "+a+" "+b+"\n") {
				t.Errorf("nix ran %d time(s), want one path-info of each system once:\n%s", n, calls)
			}
			if !c.want {
				if len(r.built) != 0 || len(r.closures) != 0 || len(ev.msgs) != 0 {
					t.Errorf("a miss kept something: built %v, closures %v, events %q", r.built, r.closures, ev.msgs)
				}
				return
			}
			if !r.built[a] || !r.built[b] || len(r.closures["a"]) == 0 || len(r.closures["b"]) == 0 || len(r.closures["a2"]) == 0 {
				t.Errorf("built %v, closures %v", r.built, r.closures)
			}
			if r.closures["a"][0].Path != a {
				t.Errorf("a's closure starts with %q, want its system", r.closures["a"][0].Path)
			}
			if len(ev.msgs) != 1 || !strings.HasPrefix(ev.msgs[0], "2 system(s) built already") {
				t.Errorf("events %q, want one saying 2 systems were built already", ev.msgs)
			}
		})
	}
}

// The closure of the system the last deploy left a host is read with the
// new closures, by the same nix path-info, and narrows that host's store
// query to what it lacks, with it as the base. When that nix path-info
// fails (the last system is not valid here after all), the new closures
// are read alone and every path is asked about.
func TestLastClosureNarrowsTheStoreQuery(t *testing.T) {
	const (
		a    = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-a"
		b    = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-b"
		last = "/nix/store/llllllllllllllllllllllllllllllll-nixos-system-a"
		gone = "/nix/store/gggggggggggggggggggggggggggggggg-nixos-system-b"
		// shared by a and its last system; new in a; only in the last
		shared, fresh, old = "/nix/store/ssssssssssssssssssssssssssssssss-base", "/nix/store/nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn-etc", "/nix/store/oooooooooooooooooooooooooooooooo-etc"
	)
	info := func(p string, refs ...string) string {
		return `{"path":"` + p + `","narSize":1,"references":["` + strings.Join(refs, `","`) + `"]}`
	}
	list := func(infos ...string) string {
		return strings.ReplaceAll("["+strings.Join(infos, ",")+"]", `[""]`, `[]`)
	}
	with := list(info(a, shared, fresh), info(b, shared), info(last, shared, old), info(shared), info(fresh), info(old))
	without := list(info(a, shared, fresh), info(b, shared), info(shared), info(fresh))
	hosts := []flake.Host{{Name: "a", OutPath: a}, {Name: "b", OutPath: b}}
	for _, c := range []struct {
		name      string
		validLast bool // nix path-info answers for the last system
		calls     []string
		base      string
		asked     []string
	}{
		{"last system here", true, []string{"path-info -r --json " + a + " " + b + " " + last}, last, []string{a, fresh}},
		{"last system not valid here", false, []string{"path-info -r --json " + a + " " + b + " " + last, "path-info -r --json " + a + " " + b}, "", []string{a, shared, fresh}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			log := filepath.Join(dir, "log")
			script := "#!/bin/sh\necho \"$*\" >>'" + log + "'\n"
			if !c.validLast {
				script += "case \"$*\" in *" + last + "*) echo \"error: path '" + last + "' is not valid\" >&2; exit 1 ;; esac\n"
			}
			script += "case \"$*\" in *" + last + "*) echo '" + with + "' ;; *) echo '" + without + "' ;; esac\n"
			if err := os.WriteFile(filepath.Join(dir, "nix"), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
			had := storeHas
			storeHas = func(p string) bool { return p == last } // gone is not here at all
			defer func() { storeHas = had }()
			r := newRun(Options{Nix: &nix.Nix{Run: &command.Runner{}}, Reporter: &events{}})
			r.lastSystems = map[string]string{"a": last, "b": gone}
			if !r.builtAlready(context.Background(), hosts, time.Now()) {
				t.Fatal("the systems were not found built")
			}
			calls, _ := os.ReadFile(log)
			got := strings.Split(strings.TrimSpace(string(calls)), "\n")
			ok := len(got) == len(c.calls)
			for i := 0; ok && i < len(got); i++ {
				ok = strings.HasSuffix(got[i], c.calls[i])
			}
			if !ok {
				t.Errorf("nix ran:\n%s\nwant, at the ends of the lines:\n%s", calls, strings.Join(c.calls, "\n"))
			}
			paths := func(h string) []string {
				var out []string
				for _, p := range r.closures[h] {
					out = append(out, p.Path)
				}
				return out
			}
			base, asked := r.queryPaths(hosts[0], paths("a"))
			slices.Sort(asked)
			want := slices.Sorted(slices.Values(c.asked))
			if base != c.base || !slices.Equal(asked, want) {
				t.Errorf("a's query: base %q, paths %q; want %q, %q", base, asked, c.base, want)
			}
			if base, asked := r.queryPaths(hosts[1], paths("b")); base != "" || len(asked) != 2 {
				t.Errorf("b's query (its last system is not here): base %q, paths %q; want every path of its closure", base, asked)
			}
		})
	}
}
