package activate

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
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

// Supervisor is the script that owns the rollback decision on the host.
// Arguments: DIR NEW OLD WINDOW_SECONDS GENERATION (OLD and GENERATION may
// be empty). Its state file holds one line: "activating", "activated RC",
// "committing", "committed PROFILE_LINK", "rolling-back REASON",
// "rolled-back RC REASON" or "stranded REASON" (no previous system).
const Supervisor = `set -u
dir=$1 new=$2 old=$3 window=$4 gen=$5
P=/nix/var/nix/profiles/system
exec </dev/null >>"$dir/log" 2>&1
echo $$ >"$dir/pid"
st() { printf '%s\n' "$*" >"$dir/state.tmp" && mv -f "$dir/state.tmp" "$dir/state"; }
decide() { printf '%s\n' "$1" >"$dir/decision.tmp" && mv -f "$dir/decision.tmp" "$dir/decision"; }
nap() { sleep 0.05 2>/dev/null || sleep 1; }
st activating
"$new/bin/switch-to-configuration" test
rc=$?
st "activated $rc"
end=$(( $(date +%s) + window + 1 ))
while [ ! -e "$dir/decision" ]; do
	if [ "$(date +%s)" -ge "$end" ] && mkdir "$dir/decided" 2>/dev/null; then
		decide "rollback not confirmed within ${window}s: the deployer vanished or lost SSH access"
	fi
	[ -e "$dir/decision" ] || nap
done
read -r verb reason <"$dir/decision" || true
if [ "$verb" = commit ]; then
	st committing
	oldlink=$(readlink "$P" 2>/dev/null) || oldlink=
	if [ -n "$gen" ]; then
		nix-env -p "$P" --switch-generation "$gen"
	else
		nix-env -p "$P" --set "$new"
	fi
	if [ $? -ne 0 ]; then
		verb=rollback reason="setting the system profile failed"
	elif ! "$new/bin/switch-to-configuration" boot; then
		newlink=$(readlink "$P")
		if [ -n "$oldlink" ]; then
			o=${oldlink#system-}; o=${o%-link}
			nix-env -p "$P" --switch-generation "$o"
			if [ -z "$gen" ]; then
				n=${newlink#system-}; n=${n%-link}
				nix-env -p "$P" --delete-generations "$n"
			fi
			"$(readlink -f "$P")/bin/switch-to-configuration" boot
		else
			rm -f "$P" "$P-${newlink#system-}"
		fi
		verb=rollback reason="making the new system the boot default failed"
	else
		st "committed $(readlink "$P")"
		rm -f "$dir/pid"
		exit 0
	fi
fi
st "rolling-back $reason"
if [ -z "$old" ]; then
	st "stranded $reason"
	rm -f "$dir/pid"
	exit 1
fi
"$old/bin/switch-to-configuration" test
st "rolled-back $? $reason"
rm -f "$dir/pid"
`

// launchScript makes the supervisor's directory and starts the detached
// supervisor given as "$@", with no input and output to a file.
const launchScript = `dir=$1; shift
umask 077
mkdir -p /run/skiff && mkdir "$dir" || exit 1
if ! "$@" </dev/null >"$dir/launch.log" 2>&1; then cat "$dir/launch.log" >&2; exit 1; fi`

// launchFileScript is launchScript for a transient systemd unit: it also
// writes the supervisor script ($2) to DIR/supervisor, which the unit runs.
// systemd expands $NAME, ${NAME} and $$ on a unit's command line when it
// starts it (systemd-run cannot turn that off before systemd 254), which
// would rewrite the script if it were an argument.
const launchFileScript = `dir=$1 script=$2; shift 2
umask 077
mkdir -p /run/skiff && mkdir "$dir" || exit 1
printf '%s\n' "$script" >"$dir/supervisor" || exit 1
if ! "$@" </dev/null >"$dir/launch.log" 2>&1; then cat "$dir/launch.log" >&2; exit 1; fi`

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

// detectScript prints "systemd" when the host runs systemd.
const detectScript = `if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then echo systemd; else echo plain; fi`

// statusScript prints the supervisor's state line, whether it still runs
// (1 or 0), then its output from byte offset $2 (1-based). It first waits
// on the host, up to $4 tenths of a second, for something to report: a
// state other than $3, the supervisor gone, or new output; so a watcher
// needs few round trips and still hears of a change at once. Liveness is
// read before the state: the supervisor writes its final state before it
// removes its pid file, so "not running" always comes with a final state.
const statusScript = `d=$1 off=$2 last=$3 n=$4
while :; do
	a=0
	if [ -f "$d/pid" ] && kill -0 "$(cat "$d/pid")" 2>/dev/null; then a=1; fi
	s=$(cat "$d/state" 2>/dev/null) || s=
	size=$(wc -c <"$d/log" 2>/dev/null) || size=0
	if [ "$s" != "$last" ] || [ "$a" = 0 ] || [ "$size" -ge "$off" ] || [ "$n" -le 0 ]; then break; fi
	n=$((n - 1))
	sleep 0.1 2>/dev/null || n=0
done
printf '%s\n%s\n' "$s" "$a"
tail -c +"$2" "$d/log" 2>/dev/null || true`

// decideScript records the decision $2 unless one was taken already
// (exit 3: too late).
const decideScript = `mkdir "$1/decided" 2>/dev/null || exit 3
printf '%s\n' "$2" >"$1/decision.tmp" && mv -f "$1/decision.tmp" "$1/decision"`

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
