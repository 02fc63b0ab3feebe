package activate

import (
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/skiffdeploy/skiff/internal/remote"
)

// Options are the safety settings of a deploy (the --confirm-timeout,
// --magic-rollback, --no-rollback-on-failure, --ignore-unit and
// --break-lock flags).
type Options struct {
	// ConfirmTimeout is how long the host waits for the deployer's
	// confirmation after activating; 0 means DefaultConfirmTimeout.
	ConfirmTimeout time.Duration
	// MagicRollback runs switch through the supervisor; false gives plain
	// switch-to-configuration switch.
	MagicRollback bool
	// NoRollbackOnFailure keeps a system whose units or checks failed.
	NoRollbackOnFailure bool
	// IgnoreUnits never count as newly failed.
	IgnoreUnits []string
	// BreakLock takes the host's deploy lock even from a live holder.
	BreakLock bool
	// NoLockoutProof confirms without a fresh connection: the host is
	// this machine (skiff deploy --local), there is no ssh to lose.
	NoLockoutProof bool
	// Given is which of the above the command line set: a host's own
	// setting in the flake gives way to those (ForHost).
	Given Given
}

// Given names the options a host's own settings can also set.
type Given struct{ MagicRollback, ConfirmTimeout bool }

// ForHost is o with a host's own magic rollback and confirm window (nil,
// 0: the host sets none) where the command line did not set them.
func (o Options) ForHost(magic *bool, confirm time.Duration) Options {
	if magic != nil && !o.Given.MagicRollback {
		o.MagicRollback = *magic
	}
	if confirm > 0 && !o.Given.ConfirmTimeout {
		o.ConfirmTimeout = confirm
	}
	return o
}

// DefaultConfirmTimeout is the confirm window when none is set.
const DefaultConfirmTimeout = 30 * time.Second

// Confirm returns the confirm window.
func (o Options) Confirm() time.Duration {
	if o.ConfirmTimeout <= 0 {
		return DefaultConfirmTimeout
	}
	return o.ConfirmTimeout
}

// Dir is where supervisors and the lock live on a host.
const Dir = "/run/skiff"

// Plan is one supervised activation.
type Plan struct {
	ID     string        // unique; names /run/skiff/act-ID and the systemd unit
	New    string        // toplevel to activate
	Old    string        // toplevel to return to; empty when there is none
	Window time.Duration // how long the supervisor waits for a decision after activating
	// Generation, when > 0, commits by switching the profile to that
	// existing generation (skiff rollback) instead of adding one.
	Generation int
	// InstallBootloader (re)installs the boot loader as the commit makes
	// the new system the boot default (NIXOS_INSTALL_BOOTLOADER=1).
	InstallBootloader bool
}

// NewID returns a fresh activation id.
func NewID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
}

var idRE = regexp.MustCompile(`^[0-9A-Za-z-]{1,64}$`)

// StateDir is the supervisor's directory on the host.
func (p Plan) StateDir() string { return Dir + "/act-" + p.ID }

// Unit is the name of the transient systemd unit.
func (p Plan) Unit() string { return "skiff-activate-" + p.ID }

// windowSeconds rounds the window up to whole seconds (at least 1).
func (p Plan) windowSeconds() int {
	s := int((p.Window + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

func (p Plan) validate() error {
	if !idRE.MatchString(p.ID) {
		return fmt.Errorf("invalid activation id %q", p.ID)
	}
	if !strings.HasPrefix(p.New, "/nix/store/") || (p.Old != "" && !strings.HasPrefix(p.Old, "/")) ||
		strings.ContainsAny(p.New+p.Old, "$%\n") {
		return fmt.Errorf("invalid systems %q, %q", p.New, p.Old)
	}
	return nil
}

// The host-side scripts are files beside this one (scripts/*.sh, POSIX
// sh, shellchecked and run under dash by the tests). Each takes its data
// as positional arguments, never inside the script.
var (
	// Supervisor is the script that owns the rollback decision on the
	// host. Arguments: DIR NEW OLD WINDOW_SECONDS GENERATION [PROFILE
	// [INSTALL]] (OLD and GENERATION may be empty; INSTALL 1 reinstalls the
	// boot loader in the boot steps). Its state file holds one line:
	// "activating", "activated RC", "committing", "committed
	// PROFILE_LINK", "rolling-back REASON", "rolled-back RC REASON" or
	// "stranded REASON" (no previous system). Its window is counted on the
	// host's monotonic clock, never on the wall clock. It undoes a failed
	// commit with the steps of a plain activation (remote.RestoreFuncs,
	// which come first, with remote.TickerFuncs, whose ticker is the
	// window's clock between the deployer's pokes).
	Supervisor = remote.RestoreFuncs + remote.TickerFuncs + supervisorFile

	//go:embed scripts/supervisor.sh
	supervisorFile string

	// launchScript makes the supervisor's directory and starts the
	// detached supervisor given as "$@", with no input and output to a
	// file.
	//
	//go:embed scripts/launch.sh
	launchScript string

	// launchFileScript is launchScript for a transient systemd unit: it
	// also writes the supervisor script ($2) to DIR/supervisor, which the
	// unit runs (systemd expands "$" on a unit's command line).
	//
	//go:embed scripts/launch-file.sh
	launchFileScript string

	// detectScript prints "systemd" when the host runs systemd.
	//
	//go:embed scripts/detect.sh
	detectScript string

	// statusScript prints the supervisor's state line, whether it still
	// runs, then its output from an offset, after waiting on the host for
	// news (see the script for why liveness is read before the state);
	// remote.TickerFuncs wake its wait.
	statusScript = remote.TickerFuncs + watchFuncs + statusFile

	//go:embed scripts/status.sh
	statusFile string

	// watchFuncs are how status.sh and decide.sh look at the
	// supervisor (skiff_observe), sourced before each.
	//
	//go:embed scripts/watch.sh
	watchFuncs string

	// activatedScript runs a command once the activation has ended, or
	// exits 97 (too early).
	//
	//go:embed scripts/activated.sh
	activatedScript string

	// decideScript records a decision unless one was taken already (exit
	// 3: too late).
	decideScript = remote.TickerFuncs + watchFuncs + decideFile

	//go:embed scripts/decide.sh
	decideFile string
)

// LaunchArgv is the command that starts the supervisor of p on a host:
// a transient systemd unit when systemd runs there, else a new session.
func LaunchArgv(p Plan, systemd bool) ([]string, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	gen := ""
	if p.Generation > 0 {
		gen = strconv.Itoa(p.Generation)
	}
	args := []string{p.StateDir(), p.New, p.Old, strconv.Itoa(p.windowSeconds()), gen}
	if p.InstallBootloader {
		args = append(args, "", "1") // the system profile, and INSTALL
	}
	if systemd {
		// Nothing on the unit's command line has a "$" (validate).
		argv := []string{"sh", "-c", launchFileScript, "sh", p.StateDir(), Supervisor,
			"systemd-run", "--unit=" + p.Unit(), "--description=skiff activation " + p.ID,
			"--collect", "--no-ask-password", "--quiet", "--service-type=exec",
			"--property=KillMode=process", "--setenv=PATH", "--setenv=LOCALE_ARCHIVE", "--",
			"/bin/sh", p.StateDir() + "/supervisor"}
		return append(argv, args...), nil
	}
	argv := []string{"sh", "-c", launchScript, "sh", p.StateDir(), "setsid", "-f", "/bin/sh", "-c", Supervisor, "skiff-supervisor"}
	return append(argv, args...), nil
}

// State is what a supervisor reports.
type State struct {
	Phase   string // "", activating, activated, committing, committed, rolling-back, rolled-back, stranded
	Code    int    // activated, rolled-back: the exit code of switch-to-configuration test
	Link    string // committed: the profile link, system-N-link
	Reason  string // rolling-back, rolled-back, stranded
	Running bool   // the supervisor process is alive
	Output  []byte // new output since the offset asked for
}

// Final reports whether the supervisor has finished.
func (s State) Final() bool {
	return s.Phase == "committed" || s.Phase == "rolled-back" || s.Phase == "stranded"
}

// Generation is the committed generation number, or 0.
func (s State) Generation() int {
	m := linkRE.FindStringSubmatch(s.Link)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

var linkRE = regexp.MustCompile(`^system-(\d+)-link$`)

// ParseState reads statusScript's output.
func ParseState(out []byte) State {
	var s State
	line, rest, _ := strings.Cut(string(out), "\n")
	alive, rest, _ := strings.Cut(rest, "\n")
	s.Running = strings.TrimSpace(alive) == "1"
	s.Output = []byte(rest)
	f := strings.SplitN(strings.TrimSpace(line), " ", 3)
	s.Phase = f[0]
	switch s.Phase {
	case "activated":
		if len(f) > 1 {
			s.Code, _ = strconv.Atoi(f[1])
		}
	case "committed":
		if len(f) > 1 {
			s.Link = f[1]
		}
	case "rolled-back":
		if len(f) > 1 {
			s.Code, _ = strconv.Atoi(f[1])
		}
		if len(f) > 2 {
			s.Reason = f[2]
		}
	case "rolling-back", "stranded":
		s.Reason = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), s.Phase))
	}
	return s
}

// oneLine keeps a reason on one line (the state file's format).
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
