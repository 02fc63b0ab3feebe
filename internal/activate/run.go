package activate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/lines"
)

// Target is the host side of the protocol; Remote implements it over SSH.
type Target interface {
	// Systemd reports whether the host runs systemd (decides how the
	// supervisor is detached).
	Systemd(ctx context.Context) (bool, error)
	// Launch starts the supervisor with argv.
	Launch(ctx context.Context, argv []string) error
	// Status reads the supervisor's state and its output from offset
	// (1-based), after waiting on the host for news. The output is
	// either in State.Output or, as it comes, given to out.
	Status(ctx context.Context, p Plan, offset int, out func([]byte)) (State, error)
	// Decide records the decision (fresh: over a new SSH connection),
	// then waits on the host for the supervisor's final state, which it
	// returns with the output from offset: a state that is not final
	// when the wait ran out. It returns ErrTooLate, with the state, when
	// a decision was taken already.
	Decide(ctx context.Context, p Plan, decision string, fresh bool, offset int) (State, error)
	// FailedUnits lists the units that are failed now.
	FailedUnits(ctx context.Context) ([]string, error)
	// Journal returns the last n journal lines of unit.
	Journal(ctx context.Context, unit string, n int) (string, error)
	// Check runs a health-check command on the host.
	Check(ctx context.Context, command string) error
	// Fetch gets url from the deployer; a non-2xx/3xx answer is an error.
	Fetch(ctx context.Context, url string) error
}

// ErrTooLate is returned by Decide when the supervisor (or an earlier
// call) has already decided.
var ErrTooLate = errors.New("the supervisor has already decided")

// Checks are a host's health checks from the flake.
type Checks struct {
	Commands []string
	URLs     []string
	Timeout  time.Duration // per check; 0 means DefaultCheckTimeout
}

// DefaultCheckTimeout bounds each health check's retries.
const DefaultCheckTimeout = 10 * time.Second

func (c Checks) timeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultCheckTimeout
	}
	return c.Timeout
}

// Budget is how long the checks may take at most.
func (c Checks) Budget() time.Duration {
	if len(c.Commands)+len(c.URLs) == 0 {
		return 0
	}
	return c.timeout()
}

// Timing of the deployer's side.
const (
	PollInterval  = 50 * time.Millisecond // supervisor status polls
	CheckInterval = time.Second           // health-check attempts
	// Fresh-connection confirm attempts back off from ConfirmBackoff,
	// doubling up to ConfirmBackoffMax.
	ConfirmBackoff    = 250 * time.Millisecond
	ConfirmBackoffMax = 2 * time.Second
	StartTimeout      = 30 * time.Second // the supervisor must report within this
	JournalLines      = 50
	maxPollFailure    = 3 // consecutive poll failures tolerated after the window ended
)

// Cause says why a rollback happened.
type Cause string

// The causes.
const (
	CauseNone        Cause = ""
	CauseActivation  Cause = "activation"  // switch-to-configuration test failed
	CauseUnits       Cause = "units"       // newly failed units
	CauseCheck       Cause = "check"       // a health check failed
	CauseLostAccess  Cause = "lost-access" // a fresh SSH connection failed after activation
	CauseUnconfirmed Cause = "unconfirmed" // the supervisor's window ran out
	CauseCommit      Cause = "commit"      // setting the profile or boot default failed
	CauseUnknown     Cause = "unknown"     // the supervisor decided for a reason we did not send
)

// Outcome is how a supervised activation ended.
type Outcome struct {
	Committed      bool
	Generation     int    // committed: the profile's generation
	RolledBack     bool   // the previous system runs again
	Stranded       bool   // a rollback was needed but there was no previous system
	Cause          Cause  // why it was rolled back (or what failed, when kept)
	Reason         string // the reason the supervisor recorded
	ActivationCode int    // exit code of switch-to-configuration test
	RollbackCode   int    // exit code of re-activating the previous system
	NewlyFailed    []string
	Journals       map[string]string // unit → last journal lines
	FailedChecks   []string
	AccessErr      error // the last fresh-connection failure
	// Kept is true when units or checks failed but NoRollbackOnFailure
	// kept the new system.
	Kept bool
}

// Hooks receive what happens.
type Hooks struct {
	Output func(line string)                // the supervisor's output, line by line
	Note   func(format string, args ...any) // progress
	// Proving, when set, is called once, when the commit is decided and
	// the proof over a new connection is about to start: what it sends to
	// the host travels alongside the proof.
	Proving func()
}

// Run drives one supervised activation of plan on t: launch, wait for
// the test activation, health, confirmation over a fresh connection, and
// the supervisor's final state. before are the units failed before.
func Run(ctx context.Context, t Target, plan Plan, o Options, checks Checks, before []string, hk Hooks) (Outcome, error) {
	if hk.Output == nil {
		hk.Output = func(string) {}
	}
	if hk.Note == nil {
		hk.Note = func(string, ...any) {}
	}
	var out Outcome
	systemd, err := t.Systemd(ctx)
	if err != nil {
		return out, err
	}
	argv, err := LaunchArgv(plan, systemd)
	if err != nil {
		return out, err
	}
	if eh, ok := t.(earlyHealth); ok {
		eh.HealthBehindFollow(checks.Commands)
	}
	if err := t.Launch(ctx, argv); err != nil {
		return out, err
	}
	w := &watcher{t: t, plan: plan, out: hk.Output}
	st, err := w.until(ctx, func(s State) bool { return s.Phase == "activated" || s.Final() }, time.Now().Add(StartTimeout), true)
	if err != nil {
		return out, err
	}
	// The supervisor's window started no earlier than now.
	seen := time.Now()
	out.ActivationCode = st.Code
	deadline := seen.Add(plan.Window - margin(plan.Window))

	decision := "commit"
	switch {
	case st.Final():
	case st.Code != 0 && st.Code != 4:
		out.Cause = CauseActivation
		decision = fmt.Sprintf("rollback switch-to-configuration test exited with %d", st.Code)
	default:
		cause, reason := health(ctx, t, o, checks, before, &out)
		if cause != CauseNone {
			out.Cause = cause
			if o.NoRollbackOnFailure {
				out.Kept = true
				hk.Note("%s; keeping the new system (--no-rollback-on-failure)", reason)
			} else {
				decision = "rollback " + reason
			}
		}
	}
	if !st.Final() {
		// Each decision comes back with the supervisor's final state
		// (decide.sh waits for it on the host).
		var final State
		if decision == "commit" && o.NoLockoutProof {
			hk.Note("no ssh to lose: the lockout proof is skipped; confirming on this machine")
			var err error
			if final, err = t.Decide(ctx, plan, "commit", false, w.offset+1); err != nil && !errors.Is(err, ErrTooLate) {
				if ctx.Err() != nil {
					return out, ctx.Err()
				}
				hk.Note("could not confirm (%v); the host rolls back by itself when the window ends", err)
			}
		} else if decision == "commit" {
			hk.Note("confirming over a new ssh connection")
			if hk.Proving != nil {
				hk.Proving()
			}
			err := confirmFresh(ctx, deadline, func(ctx context.Context) error {
				s, err := t.Decide(ctx, plan, "commit", true, w.offset+1)
				if err == nil || errors.Is(err, ErrTooLate) {
					final = s
				}
				return err
			})
			switch {
			case err == nil, errors.Is(err, ErrTooLate):
			case ctx.Err() != nil:
				return out, ctx.Err()
			default:
				out.AccessErr = err
				out.Cause = CauseLostAccess
				reason := "lost SSH access after activation: " + err.Error()
				hk.Note("%s; asking the host to roll back", reason)
				// The host's session may still work; if not, the
				// supervisor times out by itself.
				final, _ = t.Decide(ctx, plan, "rollback "+oneLine(reason), false, w.offset+1)
			}
		} else {
			hk.Note("asking the host to roll back: %s", strings.TrimPrefix(decision, "rollback "))
			var err error
			if final, err = t.Decide(ctx, plan, oneLine(decision), false, w.offset+1); err != nil && !errors.Is(err, ErrTooLate) {
				hk.Note("could not reach the host (%v); it rolls back by itself when the window ends", err)
			}
		}
		if final.Final() {
			w.emit(final.Output)
			w.flush()
			st = final
		} else {
			// The supervisor ends at the latest one rollback after its
			// window.
			st, err = w.until(ctx, State.Final, seen.Add(plan.Window+time.Second), false)
			if err != nil {
				return out, err
			}
		}
	}
	return finish(out, st), nil
}

// finish reads the supervisor's final state into out.
func finish(out Outcome, st State) Outcome {
	out.Reason = st.Reason
	switch st.Phase {
	case "committed":
		out.Committed = true
		out.Generation = st.Generation()
		if !out.Kept {
			out.Cause = CauseNone
		}
	case "rolled-back":
		out.RolledBack = true
		out.RollbackCode = st.Code
	case "stranded":
		out.Stranded = true
	}
	if !out.Committed && !out.Kept {
		switch {
		case strings.HasPrefix(st.Reason, "not confirmed within"):
			if out.Cause != CauseLostAccess {
				out.Cause = CauseUnconfirmed
			}
		case strings.Contains(st.Reason, "system profile failed"), strings.Contains(st.Reason, "boot default failed"):
			out.Cause = CauseCommit
		case out.Cause == CauseNone:
			out.Cause = CauseUnknown
		}
	}
	return out
}

// margin keeps the deployer's deadline before the supervisor's.
func margin(window time.Duration) time.Duration {
	if m := window / 4; m < time.Second {
		return m
	}
	return time.Second
}

// health compares failed units and runs the checks. It returns the cause
// and a reason naming what failed.
func health(ctx context.Context, t Target, o Options, c Checks, before []string, out *Outcome) (Cause, string) {
	if hs, ok := t.(healthSender); ok {
		hs.SendHealth(ctx, c.Commands)
	}
	after, err := t.FailedUnits(ctx)
	if err == nil {
		out.NewlyFailed = NewlyFailed(before, after, o.IgnoreUnits)
	}
	if len(out.NewlyFailed) > 0 {
		// The journals are asked for at once (on the host's session, one
		// round trip for all).
		js := make([]string, len(out.NewlyFailed))
		var wg sync.WaitGroup
		for i, u := range out.NewlyFailed {
			wg.Go(func() {
				j, err := t.Journal(ctx, u, JournalLines)
				if err != nil {
					j = fmt.Sprintf("(journal unavailable: %v)", err)
				}
				js[i] = j
			})
		}
		wg.Wait()
		out.Journals = map[string]string{}
		for i, u := range out.NewlyFailed {
			out.Journals[u] = js[i]
		}
		return CauseUnits, "newly failed units " + andList(out.NewlyFailed)
	}
	out.FailedChecks = RunChecks(ctx, t, c)
	if len(out.FailedChecks) > 0 {
		return CauseCheck, strings.Join(out.FailedChecks, "; ")
	}
	return CauseNone, ""
}

// A healthSender is a Target that can send the health requests at once
// (the failed units and the first attempt of every check command) before
// their answers are read (by FailedUnits and Check): one round trip.
type healthSender interface {
	SendHealth(ctx context.Context, checks []string)
}

// An earlyHealth is a Target that can send the health requests even
// before the activation has ended, to run on the host as soon as it has.
type earlyHealth interface {
	HealthBehindFollow(checks []string)
}

// A Checker runs health checks: commands on the host, URLs from the
// deployer. Every Target is one; so is a Remote without a supervisor
// (nix-darwin hosts).
type Checker interface {
	Check(ctx context.Context, command string) error
	Fetch(ctx context.Context, url string) error
}

// RunChecks runs every check of c at once, each retried every
// CheckInterval until the checks' timeout, and returns a description of
// each that never passed. It is the one health-check runner: the
// supervised path and nix-darwin hosts use it.
func RunChecks(ctx context.Context, t Checker, c Checks) []string {
	type check struct {
		name string
		run  func(context.Context) error
	}
	var all []check
	for _, cmd := range c.Commands {
		all = append(all, check{"check " + quoteName(cmd), func(ctx context.Context) error { return t.Check(ctx, cmd) }})
	}
	for _, u := range c.URLs {
		all = append(all, check{"check " + u, func(ctx context.Context) error { return t.Fetch(ctx, u) }})
	}
	fails := make([]string, len(all))
	var wg sync.WaitGroup
	deadline := time.Now().Add(c.timeout())
	for i, ch := range all {
		wg.Go(func() {
			if err := retry(ctx, deadline, checkPolicy, ch.run); err != nil {
				fails[i] = fmt.Sprintf("%s failed: %v", ch.name, err)
			}
		})
	}
	wg.Wait()
	var out []string
	for _, f := range fails {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

func quoteName(s string) string { return "\"" + s + "\"" }

// confirmFresh calls try (the confirmation over a fresh connection) until
// it gets through, returns ErrTooLate, or gives a lockout verdict, which
// needs a definite answer: authentication refused, connection refused or a
// changed host key end the attempts at once; any other failure (sshd
// dropping connections before authentication when busy, a reset during key
// exchange, an attempt that timed out, ssh exiting without a reason) is
// tried again, with a backoff, until deadline; failing until then is a
// lockout too. It returns the most telling failure: a definite one, else
// the last attempt that failed by itself rather than being cut by the
// deadline.
func confirmFresh(ctx context.Context, deadline time.Time, try func(context.Context) error) error {
	return retry(ctx, deadline, confirmPolicy, try)
}

// The retry policies: the fresh-connection confirmation backs off and
// stops at a definite lockout; a health check is tried again at a fixed
// interval.
var (
	confirmPolicy = retryPolicy{First: ConfirmBackoff, Max: ConfirmBackoffMax, Stop: Definite,
		Cut: func(after time.Duration) error { return &cutError{after: after} }}
	checkPolicy = retryPolicy{First: CheckInterval, Max: CheckInterval}
)

// Definite reports whether a failed fresh connection proves a lockout on
// its own: the host refused the key, the connection, or presents another
// host key.
func Definite(err error) bool {
	switch fault.ClassOf(err) {
	case fault.Auth, fault.Refused, fault.HostKey:
		return true
	}
	return false
}

// cutError is an attempt stopped by the end of the confirm window. It
// hides what the stopped ssh said (nothing useful), so that no message
// reads like a failure of ssh with an empty reason.
type cutError struct{ after time.Duration }

func (e *cutError) Error() string {
	return fmt.Sprintf("no answer within the confirm window: the new connection was still pending when it ran out, %s after it started", e.after.Round(100*time.Millisecond))
}

// retryPolicy is how retry tries again.
type retryPolicy struct {
	// First is the wait after the first failed attempt; each next wait
	// doubles, up to Max (Max == First: a fixed interval).
	First, Max time.Duration
	// Stop, when set, says that a failure is an answer: no more
	// attempts, and it is the result.
	Stop func(error) bool
	// Cut, when set, stands for a failure of an attempt stopped by the
	// deadline, which has nothing to say (after: how long it ran).
	Cut func(after time.Duration) error
}

// retry calls try until it succeeds, returns ErrTooLate, fails for good
// (p.Stop), or the next attempt would start after deadline (at least one
// attempt); each attempt is bounded by the deadline. It returns the most
// telling failure: one that stops, else the last attempt that failed by
// itself rather than being cut by the deadline (the first failure when
// every attempt was cut).
func retry(ctx context.Context, deadline time.Time, p retryPolicy, try func(context.Context) error) error {
	var last error
	wait := p.First
	for {
		begun := time.Now()
		actx, cancel := context.WithDeadline(ctx, deadline)
		err := try(actx)
		cut := actx.Err() != nil
		cancel()
		if err == nil || errors.Is(err, ErrTooLate) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if p.Stop != nil && p.Stop(err) {
			return err
		}
		if cut && p.Cut != nil {
			err = p.Cut(time.Now().Sub(begun))
		}
		if !cut || last == nil {
			last = err
		}
		if !time.Now().Add(wait).Before(deadline) {
			return last
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, max(p.Max, p.First))
	}
}

// watcher polls the supervisor, passing its output on line by line.
type watcher struct {
	t      Target
	plan   Plan
	out    func(string)
	offset int
	lines  *lines.Writer
	last   State
}

// until polls until done(state) holds. Before deadline, poll failures are
// retried; after it, a few consecutive failures end the wait. starting
// means the supervisor may not have written its state yet.
func (w *watcher) until(ctx context.Context, done func(State) bool, deadline time.Time, starting bool) (State, error) {
	failures := 0
	for {
		st, err := w.t.Status(ctx, w.plan, w.offset+1, w.emit)
		if err == nil {
			failures = 0
			w.emit(st.Output)
			w.last = st
			if done(st) {
				w.flush()
				return st, nil
			}
			if !st.Running && st.Phase != "" {
				w.flush()
				return st, fmt.Errorf("the activation supervisor on the host stopped in state %q; see %s/log", st.Phase, w.plan.StateDir())
			}
			if starting && st.Phase == "" && time.Now().After(deadline) {
				return st, fmt.Errorf("the activation supervisor did not start within %s; see %s/launch.log", StartTimeout, w.plan.StateDir())
			}
		} else {
			if ctx.Err() != nil {
				return w.last, ctx.Err()
			}
			if le, ok := errors.AsType[*launchError](err); ok {
				return w.last, le.err
			}
			failures++
			if time.Now().After(deadline) && failures >= maxPollFailure {
				return w.last, fmt.Errorf("lost contact with the host while it activates (%w); it rolls back by itself unless confirmed", err)
			}
		}
		select {
		case <-ctx.Done():
			return w.last, ctx.Err()
		case <-time.After(PollInterval):
		}
	}
}

func (w *watcher) emit(b []byte) {
	w.offset += len(b)
	if w.lines == nil {
		w.lines = lines.New(func(l []byte) { w.out(string(lines.Trim(l))) })
	}
	w.lines.Write(b)
}

func (w *watcher) flush() {
	if w.lines != nil {
		w.lines.Flush()
	}
}

// NewlyFailed are the units failed after but not before, minus ignored.
func NewlyFailed(before, after, ignore []string) []string {
	var out []string
	for _, u := range after {
		if !slices.Contains(before, u) && !slices.Contains(ignore, u) && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out
}

// andList joins "a", "a and b", "a, b and c".
func andList(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}
