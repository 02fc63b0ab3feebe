package fleet

import (
	"time"

	"github.com/skiffdeploy/skiff/internal/fault"
)

// Phase is a step of a run or of one host's pipeline.
type Phase string

// The phases, in order.
const (
	PhaseWave     Phase = "wave"
	PhaseEval     Phase = "eval"
	PhaseBuild    Phase = "build"
	PhaseConnect  Phase = "connect"
	PhaseCopy     Phase = "copy"
	PhaseProfile  Phase = "profile"
	PhaseActivate Phase = "activate"
	PhaseRollback Phase = "rollback"
	PhaseDone     Phase = "done"
)

// Event is a phase change or a line of output. Host is empty for events of
// the whole run (evaluation, build).
type Event struct {
	Time  time.Time
	Host  string
	Phase Phase
	Msg   string
	// Output is true for a line a host's command printed.
	Output bool
	// Progress is true for progress within a phase (bytes copied so far);
	// renderers that print phase changes only skip it.
	Progress    bool
	Done, Total int64
	// Status is a host's outcome, on its PhaseDone event.
	Status Status
}

// Reporter receives events; it must be safe for concurrent use.
type Reporter interface {
	Event(Event)
}

// Status is how a host's deploy ended.
type Status string

// The statuses.
const (
	Deployed   Status = "deployed"
	UpToDate   Status = "up to date"
	Failed     Status = "failed"
	RolledBack Status = "rolled back"
	Skipped    Status = "skipped"
	// Interrupted: the run was stopped (Ctrl-C) before the host's deploy
	// could finish; its error (class interrupted) says where and what
	// state the host is in. An activation that had started is never
	// interrupted: it finishes and its host is Deployed or RolledBack.
	Interrupted Status = "interrupted"
)

// Result is one host's outcome. CopiedPaths and CopiedBytes are what was
// copied to the host: 0 when the copy was refused, failed or was
// interrupted (the paths a stopped copy had sent are not counted: finding
// them would take another round trip).
type Result struct {
	Host        string
	Status      Status
	Mode        Mode
	OldPath     string
	NewPath     string
	OldGen      int
	NewGen      int // 0 when no generation was made
	CopiedPaths int
	CopiedBytes int64
	FailedUnits []string
	Duration    time.Duration
	Phases      map[Phase]time.Duration // time spent in each phase of this host
	Note        string                  // why a host was skipped; that the run was interrupted during its activation
	Err         error

	// RebootRequired: the host runs a kernel, initrd or kernel modules
	// it has not booted (NixOS only; Note says so too). Rebooted:
	// --reboot rebooted it and it came back.
	RebootRequired bool
	Rebooted       bool
}

// Class is the error class of a failed host, or "".
func (r Result) Class() fault.Class {
	if r.Err == nil {
		return ""
	}
	if c := fault.ClassOf(r.Err); c != "" {
		return c
	}
	return "error"
}
