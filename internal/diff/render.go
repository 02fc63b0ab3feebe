package diff

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/skiffdeploy/skiff/internal/fault"
)

// WriteText prints the fleet summary: one line per group of hosts with
// identical changes, followed by every package change when the line only
// counts them.
//
//	web1, web2: demo-web 1 → 2, restarts demo-web.service; size +1.2 KiB
//	db1: up to date
func WriteText(w io.Writer, plans []HostPlan) {
	for _, g := range Summarize(plans) {
		line := strings.Join(g.Hosts, ", ") + ": " + g.Line
		if g.Size != "" {
			line += "; size " + g.Size
		}
		fmt.Fprintln(w, line)
		for _, m := range g.More {
			fmt.Fprintln(w, "  "+m)
		}
	}
}

// Report is the --json output. Fields are added, never repurposed.
type Report struct {
	Hosts  []JSONHost  `json:"hosts"`
	Groups []JSONGroup `json:"groups"`
}

// JSONHost is one host's plan in the --json output. Lists are never null.
type JSONHost struct {
	Host      string `json:"host"`
	Status    Status `json:"status"`
	OldSystem string `json:"old_system"`
	NewSystem string `json:"new_system"`
	// System is the system's own version change; null when it is the same.
	System         *Change   `json:"system"`
	Added          []Package `json:"added"`
	Removed        []Package `json:"removed"`
	Changed        []Change  `json:"changed"`
	OldSizeBytes   int64     `json:"old_size_bytes"`
	NewSizeBytes   int64     `json:"new_size_bytes"`
	SizeDeltaBytes int64     `json:"size_delta_bytes"`
	// Units is null when dry-activate did not run.
	Units       *Units     `json:"units"`
	CopiedPaths int        `json:"copied_paths"`
	CopiedBytes int64      `json:"copied_bytes"`
	Error       *JSONError `json:"error"`
	// SetsBootDefault: the host runs the new system but boots another by
	// default (after a deploy in mode test); a deploy would set it.
	SetsBootDefault bool `json:"sets_boot_default"`
}

// JSONError is a failed host's error.
type JSONError struct {
	Class   fault.Class `json:"class"`
	Message string      `json:"message"`
	Hint    string      `json:"hint"`
}

// JSONGroup is hosts with identical changes and the summary line.
type JSONGroup struct {
	Hosts   []string `json:"hosts"`
	Summary string   `json:"summary"`
}

// ToReport builds the --json output.
func ToReport(plans []HostPlan) Report {
	r := Report{Hosts: []JSONHost{}, Groups: []JSONGroup{}}
	for _, p := range plans {
		h := JSONHost{
			Host: p.Host, Status: p.Status, OldSystem: p.OldSystem, NewSystem: p.NewSystem,
			System:       p.Closure.System,
			Added:        nonNil(p.Closure.Added),
			Removed:      nonNil(p.Closure.Removed),
			Changed:      nonNil(p.Closure.Changed),
			OldSizeBytes: p.Closure.OldSize, NewSizeBytes: p.Closure.NewSize, SizeDeltaBytes: p.Closure.SizeDelta,
			CopiedPaths: p.CopiedPaths, CopiedBytes: p.CopiedBytes, SetsBootDefault: p.SetsBootDefault,
		}
		if p.Activation {
			u := p.Units
			u.Stop, u.Start, u.Restart, u.Reload = nonNil(u.Stop), nonNil(u.Start), nonNil(u.Restart), nonNil(u.Reload)
			h.Units = &u
		}
		if p.Err != nil {
			e := &JSONError{Class: p.Class(), Message: p.Err.Error()}
			if fe, ok := fault.As(p.Err); ok {
				e.Hint = fe.Hint
			}
			h.Error = e
		}
		r.Hosts = append(r.Hosts, h)
	}
	for _, g := range Summarize(plans) {
		s := g.Line
		if g.Size != "" {
			s += "; size " + g.Size
		}
		r.Groups = append(r.Groups, JSONGroup{Hosts: g.Hosts, Summary: s})
	}
	return r
}

// WriteJSON prints the --json output.
func WriteJSON(w io.Writer, plans []HostPlan) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(ToReport(plans))
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
