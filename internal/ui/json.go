package ui

import (
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/fleet"
)

// JSON writes JSON Lines: one object per phase change or output line, and
// a final summary object. Fields are only ever added, never repurposed.
type JSON struct {
	W  io.Writer
	mu sync.Mutex
}

// EventJSON is one line of the stream.
type EventJSON struct {
	Type    string `json:"type"` // "phase" or "output"
	Time    string `json:"time"` // RFC 3339 with nanoseconds
	Host    string `json:"host,omitempty"`
	Phase   string `json:"phase"`
	Message string `json:"message"`
}

// HostJSON is one host of the summary.
type HostJSON struct {
	Host          string           `json:"host"`
	Result        string           `json:"result"`
	Mode          string           `json:"mode"`
	OldPath       string           `json:"old_path,omitempty"`
	NewPath       string           `json:"new_path,omitempty"`
	OldGeneration int              `json:"old_generation,omitempty"`
	NewGeneration int              `json:"new_generation,omitempty"`
	CopiedPaths   int              `json:"copied_paths"`
	CopiedBytes   int64            `json:"copied_bytes"`
	FailedUnits   []string         `json:"failed_units,omitempty"`
	DurationMS    int64            `json:"duration_ms"`
	PhasesMS      map[string]int64 `json:"phases_ms,omitempty"`
	Note          string           `json:"note,omitempty"`
	ErrorClass    string           `json:"error_class,omitempty"`
	Error         string           `json:"error,omitempty"`
	Hint          string           `json:"hint,omitempty"`
	// RebootRequired: the host runs a kernel, initrd or kernel modules it
	// has not booted (NixOS hosts; always false for nix-darwin).
	RebootRequired bool `json:"reboot_required"`
	Rebooted       bool `json:"rebooted,omitempty"` // --reboot rebooted it and it came back
}

// SummaryJSON is the last line of the stream.
type SummaryJSON struct {
	Type     string     `json:"type"` // "summary"
	Time     string     `json:"time"`
	ExitCode int        `json:"exit_code"`
	Hosts    []HostJSON `json:"hosts"`
}

// Event implements fleet.Reporter.
func (j *JSON) Event(e fleet.Event) {
	if e.Progress {
		return
	}
	typ := "phase"
	if e.Output {
		typ = "output"
	}
	j.write(EventJSON{Type: typ, Time: e.Time.Format(time.RFC3339Nano), Host: e.Host, Phase: string(e.Phase), Message: e.Msg})
}

// Summary writes the summary object.
func (j *JSON) Summary(results []fleet.Result, code int) {
	s := SummaryJSON{Type: "summary", Time: time.Now().Format(time.RFC3339Nano), ExitCode: code, Hosts: []HostJSON{}}
	for _, r := range results {
		h := HostJSON{Host: r.Host, Result: string(r.Status), Mode: string(r.Mode), OldPath: r.OldPath,
			OldGeneration: r.OldGen, NewGeneration: r.NewGen, CopiedPaths: r.CopiedPaths, CopiedBytes: r.CopiedBytes,
			FailedUnits: r.FailedUnits, DurationMS: r.Duration.Milliseconds(), Note: r.Note, ErrorClass: string(r.Class()),
			RebootRequired: r.RebootRequired, Rebooted: r.Rebooted}
		if r.Status == fleet.Deployed || r.Status == fleet.UpToDate {
			h.NewPath = r.NewPath
		}
		if len(r.Phases) > 0 {
			h.PhasesMS = map[string]int64{}
			for p, d := range r.Phases {
				h.PhasesMS[string(p)] = d.Milliseconds()
			}
		}
		if r.Err != nil {
			h.Error = r.Err.Error()
			if fe, ok := fault.As(r.Err); ok {
				h.Hint = fe.Hint
			}
		}
		s.Hosts = append(s.Hosts, h)
	}
	j.write(s)
}

func (j *JSON) write(v any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	b, _ := json.Marshal(v)
	j.W.Write(append(b, '\n'))
}
