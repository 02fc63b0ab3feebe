package diff

import (
	"fmt"
	"sort"
	"strings"

	"github.com/skiffdeploy/skiff/internal/fault"
)

// Status is what a plan found for a host.
type Status string

// The statuses.
const (
	Changes  Status = "changes"    // the new system differs from the running one
	UpToDate Status = "up-to-date" // the host runs exactly the new system and boots it by default
	Failed   Status = "failed"     // unreachable, build failed, ...: see Err
)

// HostPlan is what deploying would change on one host.
type HostPlan struct {
	Host      string
	Status    Status
	OldSystem string // what the host runs; empty when nothing
	NewSystem string
	Closure   Closure
	Units     Units
	// Activation is false when dry-activate did not run (a failure, or a
	// system without switch-to-configuration).
	Activation  bool
	CopiedPaths int   // paths copied so that dry-activate could run
	CopiedBytes int64 // their NAR size
	// SetsBootDefault: the host runs the new system already (a deploy in
	// mode test) but boots BootDefault (empty: no system profile); a
	// deploy would only make the new system the boot default.
	SetsBootDefault bool
	BootDefault     string
	Err             error
}

// Class is the failure's class, or "".
func (p HostPlan) Class() fault.Class {
	if p.Err == nil {
		return ""
	}
	if c := fault.ClassOf(p.Err); c != "" {
		return c
	}
	return "error"
}

// Actions are the unit actions as a person reads them: a unit that would
// be stopped and started again is restarted.
func (u Units) Actions() (stops, starts, restarts, reloads []string) {
	restarts = append(restarts, u.Restart...)
	for _, s := range u.Stop {
		if contains(u.Start, s) {
			if !contains(restarts, s) {
				restarts = append(restarts, s)
			}
		} else {
			stops = append(stops, s)
		}
	}
	for _, s := range u.Start {
		if !contains(u.Stop, s) {
			starts = append(starts, s)
		}
	}
	return stops, starts, restarts, append(reloads, u.Reload...)
}

// maxInline is how many package changes a summary line names; more are
// counted there and listed on the lines below it.
const maxInline = 6

// Group is hosts with identical changes.
type Group struct {
	Hosts []string
	Line  string   // the changes on one line
	More  []string // every package change, when Line only counts them
	Size  string   // the size delta, "" when nothing changes
}

// Describe puts a plan's changes on one line (without the host name), and
// lists every package change when the line only counts them.
func Describe(p HostPlan) (line string, more []string) {
	switch p.Status {
	case UpToDate:
		return "up to date", nil
	case Failed:
		return fmt.Sprintf("failed (%s)", p.Class()), nil
	}
	if p.SetsBootDefault {
		boots := "no system profile yet"
		if p.BootDefault != "" {
			boots = "boots " + p.BootDefault + " by default"
		}
		return "runs the new system but " + boots + ": a deploy makes it the boot default (no package or unit changes)", nil
	}
	c := p.Closure
	var pkgs []string
	if c.System != nil {
		pkgs = append(pkgs, fmt.Sprintf("nixos %s → %s", c.System.Old, c.System.New))
	}
	for _, ch := range c.Changed {
		pkgs = append(pkgs, fmt.Sprintf("%s %s → %s", ch.Name, ch.Old, ch.New))
	}
	for _, a := range c.Added {
		pkgs = append(pkgs, strings.TrimSpace("adds "+a.Name+" "+a.Version))
	}
	for _, r := range c.Removed {
		pkgs = append(pkgs, strings.TrimSpace("removes "+r.Name+" "+r.Version))
	}
	var parts []string
	if len(pkgs) > maxInline {
		var counts []string
		if n := len(c.Changed); n > 0 || c.System != nil {
			if c.System != nil {
				n++
			}
			counts = append(counts, fmt.Sprintf("%d changed", n))
		}
		if n := len(c.Added); n > 0 {
			counts = append(counts, fmt.Sprintf("%d added", n))
		}
		if n := len(c.Removed); n > 0 {
			counts = append(counts, fmt.Sprintf("%d removed", n))
		}
		parts = append(parts, strings.Join(counts, ", "))
		more = pkgs
	} else {
		parts = append(parts, pkgs...)
	}
	if len(pkgs) == 0 {
		parts = append(parts, "no version changes")
	}
	if !p.Activation {
		parts = append(parts, "activation not checked")
	} else {
		stops, starts, restarts, reloads := p.Units.Actions()
		for _, a := range []struct {
			verb  string
			units []string
		}{{"stops", stops}, {"restarts", restarts}, {"reloads", reloads}, {"starts", starts}} {
			if len(a.units) > 0 {
				parts = append(parts, a.verb+" "+strings.Join(a.units, ", "))
			}
		}
		if p.Units.Empty() {
			parts = append(parts, "no unit changes")
		}
	}
	return strings.Join(parts, ", "), more
}

// Summarize groups hosts whose changes are identical, in the order their
// first host appears in plans.
func Summarize(plans []HostPlan) []Group {
	var groups []Group
	index := map[string]int{}
	deltas := map[int][]int64{}
	for _, p := range plans {
		line, more := Describe(p)
		key := line + "\x00" + strings.Join(more, "\x00")
		i, ok := index[key]
		if !ok {
			i = len(groups)
			index[key] = i
			groups = append(groups, Group{Line: line, More: more})
		}
		groups[i].Hosts = append(groups[i].Hosts, p.Host)
		if p.Status == Changes && !p.SetsBootDefault {
			deltas[i] = append(deltas[i], p.Closure.SizeDelta)
		}
	}
	for i, ds := range deltas {
		sort.Slice(ds, func(a, b int) bool { return ds[a] < ds[b] })
		groups[i].Size = SignedBytes(ds[0])
		if ds[len(ds)-1] != ds[0] {
			groups[i].Size += " to " + SignedBytes(ds[len(ds)-1])
		}
	}
	return groups
}

// SignedBytes formats a size change for people: "+1.5 KiB", "-20 B", "±0 B".
func SignedBytes(n int64) string {
	sign := "+"
	switch {
	case n == 0:
		return "±0 B"
	case n < 0:
		sign, n = "-", -n
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%s%d B", sign, n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%s%.1f %ciB", sign, float64(n)/float64(div), "KMGTPE"[exp])
}
