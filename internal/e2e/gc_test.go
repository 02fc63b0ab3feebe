package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/skiffdeploy/skiff/internal/lab"
)

type generationsJSON struct {
	Hosts []struct {
		Host        string `json:"host"`
		Current     string `json:"current"`
		Booted      string `json:"booted"`
		Generations []struct {
			Number       int    `json:"number"`
			Path         string `json:"path"`
			NixOSVersion string `json:"nixosVersion"`
			Current      bool   `json:"current"`
			Booted       bool   `json:"booted"`
			BootDefault  bool   `json:"bootDefault"`
		} `json:"generations"`
	} `json:"hosts"`
}

func listGenerations(t *testing.T, l *lab.Lab, flake, name string) generationsJSON {
	t.Helper()
	r := skiffOn(t, l, "generations", "--json", "--flake", flake, name)
	wantCode(t, r, 0)
	var g generationsJSON
	if err := json.Unmarshal([]byte(r.stdout), &g); err != nil {
		t.Fatalf("generations --json: %v\n%s", err, r.stdout)
	}
	if len(g.Hosts) != 1 {
		t.Fatalf("%d hosts, want 1", len(g.Hosts))
	}
	return g
}

func numbers(g generationsJSON) []int {
	var n []int
	for _, x := range g.Hosts[0].Generations {
		n = append(n, x.Number)
	}
	return n
}

// wantRow wants a line of a table whose first columns are fields.
func wantRow(t *testing.T, table string, fields ...string) {
	t.Helper()
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) >= len(fields) && slices.Equal(f[:len(fields)], fields) {
			return
		}
	}
	t.Errorf("no row starting with %q in:\n%s", fields, table)
}

func TestGenerationsAndGCKeepWhatTheyMust(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "gen1"})
	h := l.Host("gen1")
	deploy := func(gen int, mode string) string {
		t.Helper()
		flake := writeFlake(t, host("gen1", fmt.Sprintf("generation = %d;", gen)))
		r := skiffOn(t, l, "deploy", "gen1", "--mode", mode, "--flake", flake)
		wantCode(t, r, 0)
		return flake
	}
	system := func(link string) string {
		out, err := h.Exec(t.Context(), "readlink", "-f", link)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}

	deploy(1, "switch")
	// A reboot: generation 1 is the booted system.
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	deploy(2, "switch")
	deploy(3, "switch")
	flake := deploy(4, "boot") // generation 4 boots next; 3 runs

	g := listGenerations(t, l, flake, "gen1")
	if d := numbers(g); !slices.Equal(d, []int{1, 2, 3, 4}) {
		t.Fatalf("generations %v, want 1..4", d)
	}
	for _, x := range g.Hosts[0].Generations {
		want := [3]bool{x.Number == 3, x.Number == 1, x.Number == 4} // current, booted, boot default
		if got := [3]bool{x.Current, x.Booted, x.BootDefault}; got != want {
			t.Errorf("generation %d: current, booted, boot default = %v, want %v", x.Number, got, want)
		}
		if x.NixOSVersion == "" || !strings.HasPrefix(x.Path, "/nix/store/") {
			t.Errorf("generation %d: version %q, path %q", x.Number, x.NixOSVersion, x.Path)
		}
	}
	r := skiffOn(t, l, "generations", "--flake", flake, "gen1")
	wantCode(t, r, 0)
	wantContains(t, "table", r.stdout, "GENERATION", "NIXOS", "current", "booted", "boot-default")

	// A test deploy adds no generation: the running system is in none.
	flake = deploy(5, "test")
	g = listGenerations(t, l, flake, "gen1")
	if d := numbers(g); !slices.Equal(d, []int{1, 2, 3, 4}) {
		t.Errorf("after a test deploy: generations %v, want 1..4", d)
	}
	for _, x := range g.Hosts[0].Generations {
		if x.Current {
			t.Errorf("generation %d marked current after a test deploy", x.Number)
		}
	}
	if cur := g.Hosts[0].Current; cur == "" || cur != system("/run/current-system") {
		t.Errorf("current %q, want the test system", cur)
	}
	r = skiffOn(t, l, "generations", "--flake", flake, "gen1")
	wantContains(t, "table", r.stdout, g.Hosts[0].Current)
	flake = deploy(3, "switch") // generation 5: runs generation 3's system again

	gen2, gen4 := system("/nix/var/nix/profiles/system-2-link"), system("/nix/var/nix/profiles/system-4-link")
	// Generation 2 is old; the rest are recent.
	if _, err := h.Exec(t.Context(), "touch", "-h", "-d", "40 days ago", "/nix/var/nix/profiles/system-2-link"); err != nil {
		t.Fatal(err)
	}
	r = skiffOn(t, l, "gc", "gen1", "--keep", "0", "--older-than", "30d", "--dry-run", "--flake", flake)
	wantCode(t, r, 0)
	wantContains(t, "dry run", r.stdout, "WOULD DELETE")
	wantRow(t, r.stdout, "gen1", "2", "1,3,4,5")

	// Keep 1: 5 (newest, boot default, running), 3 (same system as 5)
	// and 1 (booted) stay; 2 and 4 go.
	r = skiffOn(t, l, "gc", "gen1", "--keep", "1", "--dry-run", "--flake", flake)
	wantCode(t, r, 0)
	wantRow(t, r.stdout, "gen1", "2,4", "1,3,5")
	if d := numbers(listGenerations(t, l, flake, "gen1")); len(d) != 5 {
		t.Fatalf("a dry run deleted generations: %v", d)
	}
	r = skiffOn(t, l, "gc", "gen1", "--keep", "1", "--json", "--flake", flake)
	wantCode(t, r, 0)
	var res struct {
		Hosts []struct {
			FreedBytes int64 `json:"freedBytes"`
			FreedPaths int   `json:"freedPaths"`
		} `json:"hosts"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || len(res.Hosts) != 1 {
		t.Fatalf("gc --json: %v\n%s", err, r.stdout)
	}
	// The systems are a few KiB: Nix counts them as 0.00 MiB.
	if res.Hosts[0].FreedPaths == 0 {
		t.Errorf("gc freed %d paths; want the old systems", res.Hosts[0].FreedPaths)
	}
	g = listGenerations(t, l, flake, "gen1")
	if d := numbers(g); !slices.Equal(d, []int{1, 3, 5}) {
		t.Errorf("after gc --keep 1: generations %v, want [1 3 5]", d)
	}
	for _, p := range []string{gen2, gen4} {
		if _, err := h.Exec(t.Context(), "test", "-e", p); err == nil {
			t.Errorf("%s survived the collection", p)
		}
	}
	for _, link := range []string{"/run/current-system", "/run/booted-system", "/nix/var/nix/profiles/system"} {
		if _, err := h.Exec(t.Context(), "nix-store", "--verify-path", system(link)); err != nil {
			t.Errorf("%s lost its system: %v", link, err)
		}
	}
}

func TestGCFreesRoomOnASmallStore(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "gsmall", StoreSize: 48 << 20})
	sys := func(gen, base int) string {
		return writeFlake(t, host("gsmall", fmt.Sprintf("generation = %d; baseSize = %d;", gen, base)))
	}
	wantCode(t, skiffOn(t, l, "deploy", "gsmall", "--flake", sys(1, 20<<20)), 0)
	wantCode(t, skiffOn(t, l, "deploy", "gsmall", "--flake", sys(2, 0)), 0)

	big := sys(3, 24<<20)
	r := skiffOn(t, l, "doctor", "--flake", big, "gsmall")
	wantContains(t, "doctor", r.stdout, "gsmall  disk", "/nix/store: ", "MiB free of 48.0 MiB")

	r = skiffOn(t, l, "deploy", "gsmall", "--flake", big)
	wantCode(t, r, 3)
	wantContains(t, "refusal", r.stderr, "needs 24.0 MiB in /nix/store")

	r = skiffOn(t, l, "gc", "gsmall", "--keep", "0", "--flake", big)
	wantCode(t, r, 0)
	wantRow(t, r.stdout, "gsmall", "1", "2", "20.0", "MiB")
	r = skiffOn(t, l, "deploy", "gsmall", "--flake", big)
	wantCode(t, r, 0)
}

func TestGCRefusesBadInput(t *testing.T) {
	flake := writeFlake(t, host("web1", ""))
	for _, args := range [][]string{
		{"gc", "web1"},                 // --keep is required
		{"gc", "web1", "--keep", "-1"}, // negative
		{"gc", "web1", "--keep", "1", "--older-than", "soon"},
		{"gc", "nosuch", "--keep", "1"},
	} {
		r := skiff(t, append(args, "--flake", flake)...)
		wantCode(t, r, 2)
	}
}
