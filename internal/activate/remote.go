package activate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/remote"
)

// Remote is the Target of a host reached over SSH.
type Remote struct {
	Host *remote.Host
	// State, when set, is what the host's probe found (whether it runs
	// systemd): no command to ask again.
	State *remote.State
	// HTTP fetches URL checks; nil means http.DefaultClient.
	HTTP *http.Client

	lastState string          // the state line Status saw last, to wait for a change
	launch    *remote.Pending // the supervisor's start, sent and not yet waited for

	mu     sync.Mutex                              // guards failed, checks and early
	failed func(context.Context) ([]string, error) // the failed units, sent by SendHealth
	checks map[string][]*remote.Pending            // first attempts sent by SendHealth
	// early: the health requests go behind the first follow of the
	// activation (HealthBehindFollow); its check commands, until sent.
	early     []string
	earlyWant bool
	earlySent bool
}

// StatusWait is how long one status read may wait on the host for news.
const StatusWait = 2 * time.Second

// FollowWait is how long one status read on the host's session may
// follow the supervisor without a change of state.
const FollowWait = 10 * time.Second

var _ Target = (*Remote)(nil)

// Systemd implements Target.
func (r *Remote) Systemd(ctx context.Context) (bool, error) {
	if r.State != nil {
		return r.State.Systemd, nil
	}
	res, err := r.Host.RunPriv(ctx, "detect systemd", false, "sh", "-c", detectScript)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(res.Stdout)) == "systemd", nil
}

// Launch implements Target. On the host's session it does not wait for
// the supervisor's start: the first Status, which follows it, is sent
// with it (one round trip for both) and reports a failed start.
func (r *Remote) Launch(ctx context.Context, argv []string) error {
	p := r.Host.StartPriv(ctx, "start the activation supervisor", argv...)
	if p.Sent() {
		r.launch = p
		return nil
	}
	_, err := p.Wait(ctx)
	return err
}

// launched waits for the start of the supervisor that Launch sent, once.
func (r *Remote) launched(ctx context.Context) error {
	p := r.launch
	if p == nil {
		return nil
	}
	r.launch = nil
	if _, err := p.Wait(ctx); err != nil {
		return &launchError{err}
	}
	return nil
}

// launchError is a failed start of the supervisor, reported by Status:
// it ends the wait for the activation at once, with err.
type launchError struct{ err error }

func (e *launchError) Error() string { return e.err.Error() }
func (e *launchError) Unwrap() error { return e.err }

// Status implements Target. On the host's session it follows the
// supervisor: the output comes to out as the supervisor writes it, and the
// command ends only when the state changes (or after FollowWait), so a
// deployer makes no round trip per burst of output.
func (r *Remote) Status(ctx context.Context, p Plan, offset int, out func([]byte)) (State, error) {
	if out != nil {
		var vals []string
		f, err := r.Host.StartFollow("follow the activation", writerFunc(out), "sh", "-c", statusScript, "sh",
			p.StateDir(), strconv.Itoa(offset), r.lastState, strconv.Itoa(int(FollowWait/(100*time.Millisecond))), "follow")
		if err == nil {
			r.sendEarlyHealth(ctx, p)
		}
		if lerr := r.launched(ctx); lerr != nil {
			// What follows is not waited for: the start failed.
			return State{}, lerr
		}
		if err == nil {
			vals, err = f.Lines(ctx)
		}
		if !errors.Is(err, remote.ErrNoSession) {
			if err != nil {
				return State{}, err
			}
			st := ParseState([]byte(strings.Join(vals, "\n") + "\n"))
			if len(vals) > 0 && vals[0] != "" {
				r.lastState = vals[0]
			}
			return st, nil
		}
	}
	if err := r.launched(ctx); err != nil {
		return State{}, err
	}
	res, err := r.Host.RunPriv(ctx, "read the activation state", false, "sh", "-c", statusScript, "sh",
		p.StateDir(), strconv.Itoa(offset), r.lastState, strconv.Itoa(int(StatusWait/(100*time.Millisecond))))
	if err != nil {
		return State{}, err
	}
	if line, _, _ := strings.Cut(string(res.Stdout), "\n"); line != "" {
		r.lastState = line
	}
	return ParseState(res.Stdout), nil
}

// writerFunc passes what is written to a function.
type writerFunc func([]byte)

func (w writerFunc) Write(p []byte) (int, error) {
	w(append([]byte(nil), p...))
	return len(p), nil
}

// Decide implements Target: decide.sh records the decision and waits on
// the host for the final state. A fresh attempt is bounded by ctx only
// until the host has said whether it recorded the decision: the wait for
// the final state (the commit, or the rollback) that follows is not an
// attempt to get in.
func (r *Remote) Decide(ctx context.Context, p Plan, decision string, fresh bool, offset int) (State, error) {
	argv := []string{"sh", "-c", decideScript, "sh", p.StateDir(), decision, strconv.Itoa(offset),
		strconv.Itoa(int((p.Window + DecideWait) / (100 * time.Millisecond)))}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	first := &firstLine{seen: make(chan struct{})}
	stop := context.AfterFunc(ctx, func() {
		select {
		case <-first.seen:
		default:
			cancel()
		}
	})
	defer stop()
	res, err := r.Host.RunPrivStream(wctx, "confirm the activation", fresh, first, argv...)
	if ctx.Err() != nil && wctx.Err() != nil {
		// Cut before the host answered: as if ctx had stopped it.
		return State{}, ctx.Err()
	}
	verdict, rest, _ := strings.Cut(string(res.Stdout), "\n")
	st := ParseState([]byte(rest))
	var ce *command.Error
	if errors.As(err, &ce) && ce.ExitCode == 3 && verdict == "too-late" {
		return st, ErrTooLate
	}
	if err != nil {
		return State{}, err
	}
	return st, nil
}

// EndAlongside prepares the end of the deploy to travel with the proof:
// on the host's session it sends a request that returns once the
// supervisor has ended (decide.sh without a decision), then calls then,
// whose requests (the boot state, the GC root's removal, the release)
// the agent runs after that end, and leaves the session (its input ends:
// the agent ends after them): a decision that must still reach the host
// (a rollback after a failed proof) goes beside it. It reports whether it
// did (false: no session).
func (r *Remote) EndAlongside(p Plan, then func()) bool {
	w := r.Host.StartAlongside("wait for the activation supervisor's end", "sh", "-c", decideScript, "sh",
		p.StateDir(), "wait", "1", strconv.Itoa(int((p.Window+DecideWait)/(100*time.Millisecond))))
	if w == nil {
		return false
	}
	then()
	r.Host.LeaveSession()
	return true
}

// DecideWait bounds, beyond the window, how long decide.sh waits on the
// host for the supervisor's final state (a rollback's re-activation);
// the deployer follows the supervisor if it has not ended by then.
const DecideWait = 60 * time.Second

// firstLine notes when the first line of output has arrived.
type firstLine struct {
	once sync.Once
	seen chan struct{}
}

func (f *firstLine) Write(p []byte) (int, error) {
	if strings.Contains(string(p), "\n") {
		f.once.Do(func() { close(f.seen) })
	}
	return len(p), nil
}

// FailedUnits implements Target.
func (r *Remote) FailedUnits(ctx context.Context) ([]string, error) {
	r.mu.Lock()
	wait := r.failed
	r.failed = nil
	r.mu.Unlock()
	if wait != nil {
		units, err := wait(ctx)
		if !tooEarly(err) {
			return units, err
		}
	}
	return r.Host.FailedUnits(ctx)
}

// SendHealth implements healthSender: on the host's session the failed
// units and the first attempt of every check go at once (one round trip);
// FailedUnits and Check take their answers. Sent already behind the
// follow of the activation (HealthBehindFollow), they are not sent again.
func (r *Remote) SendHealth(ctx context.Context, checks []string) {
	if !r.Host.InSession() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.earlySent {
		return
	}
	r.sendHealth(ctx, checks, nil)
}

// sendHealth sends the health requests, each run by prefix (none: as
// they are).
func (r *Remote) sendHealth(ctx context.Context, checks []string, prefix []string) {
	r.failed = r.Host.StartFailedUnits(ctx, prefix...)
	r.checks = map[string][]*remote.Pending{}
	for _, cmd := range checks {
		r.checks[cmd] = append(r.checks[cmd], r.Host.StartPriv(ctx, "health check", append(slices.Clone(prefix), "sh", "-c", cmd)...))
	}
}

// HealthBehindFollow implements earlyHealth: the health requests go on
// the host's session right behind the first request that follows the
// activation, each run by activated.sh, so that the agent runs them as
// soon as the activation has ended: no round trip of their own. One that
// ran too early (the follow ended first) is asked again.
func (r *Remote) HealthBehindFollow(checks []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.early, r.earlyWant = checks, true
}

// sendEarlyHealth sends the health requests HealthBehindFollow asked for,
// once, on the session of the follow just sent.
func (r *Remote) sendEarlyHealth(ctx context.Context, p Plan) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.earlyWant || r.earlySent || !r.Host.InSession() {
		return
	}
	r.earlySent = true
	r.sendHealth(ctx, r.early, []string{"sh", "-c", activatedScript, "sh", p.StateDir()})
}

// tooEarly reports whether a health request ran before the activation
// ended (activated.sh's exit 97).
func tooEarly(err error) bool {
	var ce *command.Error
	return errors.As(err, &ce) && ce.ExitCode == 97 && strings.Contains(ce.Stderr, "skiff: too early")
}

// Journal implements Target.
func (r *Remote) Journal(ctx context.Context, unit string, n int) (string, error) {
	return r.Host.Journal(ctx, unit, n)
}

// Check implements Target: the command runs through sh -c on the host,
// privileged like the deploy.
func (r *Remote) Check(ctx context.Context, cmd string) error {
	r.mu.Lock()
	var sent *remote.Pending
	if ps := r.checks[cmd]; len(ps) > 0 {
		sent, r.checks[cmd] = ps[0], ps[1:]
	}
	r.mu.Unlock()
	var err error
	if sent != nil {
		_, err = sent.Wait(ctx)
	}
	if sent == nil || tooEarly(err) {
		_, err = r.Host.RunPriv(ctx, "health check", false, "sh", "-c", cmd)
	}
	var ce *command.Error
	if errors.As(err, &ce) && ce.ExitCode > 0 && ce.ExitCode != 255 {
		msg := fmt.Sprintf("exit status %d", ce.ExitCode)
		if t := command.Tail(ce.Stderr, 1); t != "" {
			msg += ": " + t
		}
		return errors.New(msg)
	}
	return err
}

// Fetch implements Target.
func (r *Remote) Fetch(ctx context.Context, url string) error {
	c := r.HTTP
	if c == nil {
		c = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}
