package remote

import (
	"context"
	_ "embed"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/skiffdeploy/skiff/internal/transport"
)

// Generation is one generation of the system profile.
type Generation struct {
	Number       int       `json:"number"`
	Date         time.Time `json:"date"`
	Path         string    `json:"path"`
	NixOSVersion string    `json:"nixosVersion"`
	Current      bool      `json:"current"`     // the running system (/run/current-system)
	Booted       bool      `json:"booted"`      // the system the host booted (/run/booted-system)
	BootDefault  bool      `json:"bootDefault"` // the profile's generation: what the boot loader starts
}

// Generations is a host's system profile with its running and booted
// systems.
type Generations struct {
	List    []Generation // oldest first
	Current string       // running system path; empty when none
	Booted  string       // booted system path
}

// ListGenerations reads the host's system generations, oldest first, with
// which one runs, which one was booted and which one boots by default. It
// needs no privileges.
func (h *Host) ListGenerations(ctx context.Context) (Generations, error) {
	st, err := h.readState(ctx, false, "gens")
	if err != nil {
		return Generations{}, err
	}
	return st.Generations(), nil
}

// Generations is the state's generations with its running and booted
// systems (empty unless the state was read with them).
func (st State) Generations() Generations {
	return Generations{List: st.Gens, Current: st.Current, Booted: st.Booted}
}

// parseGens reads system.sh's gen lines (NUMBER, mtime, system, NixOS
// version, tab-separated) into generations, oldest first, marking those
// st runs, booted and boots by default.
func parseGens(lines []string, st State) []Generation {
	var list []Generation
	for _, l := range lines {
		f := strings.Split(strings.TrimRight(l, "\r"), "\t")
		if len(f) != 4 {
			continue
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || !strings.HasPrefix(f[2], "/") {
			continue
		}
		gen := Generation{Number: n, Path: f[2], NixOSVersion: strings.TrimSpace(f[3]), BootDefault: n == st.Generation}
		if secs, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			gen.Date = time.Unix(secs, 0).UTC()
		}
		list = append(list, gen)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Number < list[j].Number })
	markSystem(list, st.Current, st.Generation, func(x *Generation) { x.Current = true })
	markSystem(list, st.Booted, st.Generation, func(x *Generation) { x.Booted = true })
	return list
}

// markSystem marks the generation holding system: the profile's own when
// it does, else the newest that does.
func markSystem(list []Generation, system string, profile int, mark func(*Generation)) {
	if system == "" {
		return
	}
	best := -1
	for i, x := range list {
		if x.Path != system {
			continue
		}
		if x.Number == profile {
			best = i
			break
		}
		best = i
	}
	if best >= 0 {
		mark(&list[best])
	}
}

// GCPolicy says which generations a collection keeps.
type GCPolicy struct {
	Keep      int           // the newest Keep generations stay
	OlderThan time.Duration // when > 0, only generations older than this go
}

// Doomed returns the generations p deletes, oldest first: never the
// newest Keep, the boot default, nor one holding the running or booted
// system.
func (p GCPolicy) Doomed(g Generations, now time.Time) []Generation {
	var out []Generation
	for i, x := range g.List {
		newest := len(g.List) - i
		switch {
		case newest <= p.Keep, x.BootDefault, x.Current, x.Booted,
			g.Current != "" && x.Path == g.Current, g.Booted != "" && x.Path == g.Booted:
			continue
		case p.OlderThan > 0 && now.Sub(x.Date) < p.OlderThan:
			continue
		}
		out = append(out, x)
	}
	return out
}

// DeleteGenerations deletes the numbered generations of the system
// profile (nix-env --delete-generations).
func (h *Host) DeleteGenerations(ctx context.Context, numbers []int) error {
	if len(numbers) == 0 {
		return nil
	}
	argv := []string{"nix-env", "-p", Profile, "--delete-generations"}
	for _, n := range numbers {
		argv = append(argv, strconv.Itoa(n))
	}
	_, err := h.run(ctx, "delete generations", transport.Exec{Argv: h.priv(argv...)})
	return err
}

// PruneGenerations deletes what p dooms among the host's generations and
// returns the deleted ones (oldest first) and those kept.
func (h *Host) PruneGenerations(ctx context.Context, p GCPolicy, now time.Time) (deleted, kept []Generation, err error) {
	st, err := h.ReadSystem(ctx)
	if err != nil {
		return nil, nil, err
	}
	g := st.Generations()
	deleted = p.Doomed(g, now)
	gone := map[int]bool{}
	var nums []int
	for _, x := range deleted {
		gone[x.Number] = true
		nums = append(nums, x.Number)
	}
	for _, x := range g.List {
		if !gone[x.Number] {
			kept = append(kept, x)
		}
	}
	if err := h.DeleteGenerations(ctx, nums); err != nil {
		return nil, nil, err
	}
	return deleted, kept, nil
}

// gcScript collects garbage and prints the free space of the store's
// filesystem before and after (root.sh's skiff_dfline), around
// nix-store's own summary.
var gcScript = rootFuncs + withoutComments(gcFile)

//go:embed gc.sh
var gcFile string

// Freed is the outcome of a garbage collection.
type Freed struct {
	Paths int   // store paths deleted
	Bytes int64 // bytes freed, as Nix counts them
	Free  int64 // bytes free on the store's filesystem afterwards; -1 when unknown
}

// CollectGarbage runs nix-store --gc on the host and reports what it freed.
func (h *Host) CollectGarbage(ctx context.Context) (Freed, error) {
	res, err := h.run(ctx, "collect garbage", transport.Exec{Argv: h.priv("sh", "-c", gcScript)})
	if err != nil {
		return Freed{}, err
	}
	return parseFreed(string(res.Stdout)), nil
}

// "12 store paths deleted, 48.21 MiB freed"
var freedRE = regexp.MustCompile(`(\d+) store paths deleted, ([0-9.]+) (B|KiB|MiB|GiB|TiB) freed`)

func parseFreed(out string) Freed {
	f := Freed{Free: -1}
	var before, after int64 = -1, -1
	for _, l := range strings.Split(out, "\n") {
		if m := freedRE.FindStringSubmatch(l); m != nil {
			f.Paths, _ = strconv.Atoi(m[1])
			v, _ := strconv.ParseFloat(m[2], 64)
			mult := map[string]float64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[m[3]]
			f.Bytes = int64(v * mult)
		}
		if k, rest, ok := strings.Cut(strings.TrimSpace(l), " "); ok && (k == "before" || k == "after") {
			if free := parseDf(rest).Free; k == "before" {
				before = free
			} else {
				after = free
			}
		}
	}
	f.Free = after
	if f.Bytes == 0 && before >= 0 && after > before {
		f.Bytes = after - before
	}
	return f
}

// String describes a generation in one line.
func (x Generation) String() string {
	return fmt.Sprintf("generation %d (%s, %s)", x.Number, x.Date.Format("2006-01-02 15:04"), x.Path)
}
