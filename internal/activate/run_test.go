package activate

import (
	"context"
	"errors"
	"fmt"
	"github.com/google/go-cmp/cmp"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/skiffdeploy/skiff/internal/fault"
)

// fakeHost plays the supervisor in memory, on synctest's clock.
type fakeHost struct {
	activation time.Duration // how long switch-to-configuration test takes
	code       int           // its exit code
	before     []string      // failed units (FailedUnits answers after on later calls)
	after      []string
	freshErr   error                                  // every fresh Decide fails with it
	fresh      func(ctx context.Context, n int) error // else the n-th fresh Decide's failure
	lostAt     time.Duration                          // > 0: every call fails from this long after launch
	check      func(n int) error                      // n-th call of Check
	mu         sync.Mutex
	start      time.Time
	plan       Plan
	st         State
	decided    string
	decideCh   chan string
	freshTries int
	checks     int
	decidedAt  time.Duration
	decidedBy  string
}

// errSSH is a refused key: a definite lockout.
var errSSH = fault.New("h", fault.Auth, "authorize your key", "authentication as root refused: key not authorized (root@h: Permission denied (publickey).)")

// errBusy is sshd dropping a connection before authentication (MaxStartups):
// worth another try.
var errBusy = fault.New("h", fault.SSH, "run ssh -v", "ssh to root@h failed: closed by the host before authentication (kex_exchange_identification: Connection closed by remote host)")

func (f *fakeHost) lost() bool {
	return f.lostAt > 0 && time.Since(f.start) >= f.lostAt
}

func (f *fakeHost) Systemd(context.Context) (bool, error) { return false, nil }

func (f *fakeHost) Launch(_ context.Context, argv []string) error {
	f.mu.Lock()
	f.start = time.Now()
	f.decideCh = make(chan string, 1)
	f.st = State{Phase: "activating", Running: true}
	f.mu.Unlock()
	go f.supervise()
	return nil
}

func (f *fakeHost) set(s State) {
	f.mu.Lock()
	f.st = s
	f.mu.Unlock()
}

func (f *fakeHost) supervise() {
	time.Sleep(f.activation)
	f.set(State{Phase: "activated", Code: f.code, Running: true})
	var d string
	select {
	case d = <-f.decideCh:
	case <-time.After(f.plan.Window + time.Second):
		f.mu.Lock()
		if f.decided == "" {
			f.decided, f.decidedBy, f.decidedAt = "rollback not confirmed within", "supervisor", time.Since(f.start)
		}
		d = f.decided
		f.mu.Unlock()
	}
	if d == "commit" {
		f.set(State{Phase: "committed", Link: "system-8-link"})
		return
	}
	time.Sleep(100 * time.Millisecond) // re-activating the previous system
	f.set(State{Phase: "rolled-back", Reason: strings.TrimPrefix(d, "rollback ")})
}

func (f *fakeHost) Status(ctx context.Context, p Plan, offset int, _ func([]byte)) (State, error) {
	if f.lost() {
		return State{}, errSSH
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st, nil
}

func (f *fakeHost) Decide(ctx context.Context, p Plan, decision string, fresh bool, offset int) (State, error) {
	if fresh {
		f.mu.Lock()
		f.freshTries++
		f.mu.Unlock()
		if f.freshErr != nil {
			return State{}, f.freshErr
		}
		if f.fresh != nil {
			f.mu.Lock()
			n := f.freshTries
			f.mu.Unlock()
			if err := f.fresh(ctx, n); err != nil {
				return State{}, err
			}
		}
	}
	if f.lost() {
		return State{}, errSSH
	}
	f.mu.Lock()
	var err error
	if f.decided != "" {
		err = ErrTooLate
	} else {
		f.decided, f.decidedBy, f.decidedAt = decision, "deployer", time.Since(f.start)
		f.decideCh <- decision
	}
	f.mu.Unlock()
	// decide.sh waits on the host for the final state.
	for {
		f.mu.Lock()
		st := f.st
		f.mu.Unlock()
		if st.Final() {
			return st, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (f *fakeHost) FailedUnits(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st.Phase == "activating" || f.start.IsZero() {
		return f.before, nil
	}
	return f.after, nil
}

func (f *fakeHost) Journal(_ context.Context, unit string, n int) (string, error) {
	return unit + ": Failed with result 'exit-code'.", nil
}

func (f *fakeHost) Check(ctx context.Context, cmd string) error {
	f.mu.Lock()
	f.checks++
	n := f.checks
	f.mu.Unlock()
	return f.check(n)
}

func (f *fakeHost) Fetch(ctx context.Context, url string) error { return f.Check(ctx, url) }

func run(t *testing.T, f *fakeHost, o Options, c Checks) (Outcome, error) {
	t.Helper()
	f.plan = Plan{ID: "t", New: "/nix/store/new", Old: "/nix/store/old", Window: o.Confirm() + c.Budget()}
	return Run(t.Context(), f, f.plan, o, c, f.before, Hooks{})
}

func TestConfirmedActivationIsCommitted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeHost{activation: 5 * time.Second}
		out, err := run(t, f, Options{ConfirmTimeout: 3 * time.Second}, Checks{})
		if err != nil {
			t.Fatal(err)
		}
		if !out.Committed || out.Generation != 8 || out.Cause != CauseNone {
			t.Errorf("outcome %+v, want committed generation 8", out)
		}
		if f.freshTries != 1 || f.decidedBy != "deployer" {
			t.Errorf("fresh tries %d, decided by %s", f.freshTries, f.decidedBy)
		}
		// A slow activation does not eat the confirm window.
		if f.decidedAt > 5*time.Second+PollInterval {
			t.Errorf("confirmed %s after launch", f.decidedAt)
		}
	})
}

func TestLockoutRollsBackBeforeTheWindowEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeHost{activation: time.Second, freshErr: errSSH}
		out, err := run(t, f, Options{ConfirmTimeout: 4 * time.Second}, Checks{})
		if err != nil {
			t.Fatal(err)
		}
		if !out.RolledBack || out.Cause != CauseLostAccess || !errors.Is(out.AccessErr, errSSH) {
			t.Fatalf("outcome %+v, want rolled back for lost access", out)
		}
		if f.decidedBy != "deployer" || !strings.Contains(f.decided, "lost SSH access") || !strings.Contains(f.decided, "Permission denied") {
			t.Errorf("decided by %s: %q", f.decidedBy, f.decided)
		}
		// A refused key is a definite answer: no second attempt, the
		// rollback is asked for at once.
		if f.freshTries != 1 || f.decidedAt > time.Second+PollInterval {
			t.Errorf("%d fresh attempts, rollback asked %s after launch", f.freshTries, f.decidedAt)
		}
	})
}

// On this machine (deploy --local) there is no ssh to lose: the decision
// is written once, without a fresh connection, and the output says so.
func TestNoLockoutProofConfirmsWithoutAFreshConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeHost{activation: time.Second, freshErr: errSSH}
		o := Options{ConfirmTimeout: 3 * time.Second, NoLockoutProof: true}
		f.plan = Plan{ID: "t", New: "/nix/store/new", Old: "/nix/store/old", Window: o.Confirm()}
		var notes []string
		out, err := Run(t.Context(), f, f.plan, o, Checks{}, nil, Hooks{Note: func(format string, a ...any) {
			notes = append(notes, fmt.Sprintf(format, a...))
		}})
		if err != nil {
			t.Fatal(err)
		}
		if !out.Committed || out.Cause != CauseNone || f.freshTries != 0 || f.decidedBy != "deployer" {
			t.Fatalf("outcome %+v, %d fresh tries, decided by %s; want committed by the deployer without a fresh connection", out, f.freshTries, f.decidedBy)
		}
		if got := strings.Join(notes, "\n"); !strings.Contains(got, "no ssh to lose: the lockout proof is skipped") || strings.Contains(got, "new ssh connection") {
			t.Errorf("notes:\n%s", got)
		}
	})
}

// A busy sshd drops the first fresh connections of the window: they are
// tried again with a backoff, and the host commits.
func TestBusyHostIsRetriedAndCommits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeHost{activation: time.Second, fresh: func(_ context.Context, n int) error {
			if n <= 4 {
				return errBusy
			}
			return nil
		}}
		out, err := run(t, f, Options{ConfirmTimeout: 10 * time.Second}, Checks{})
		if err != nil {
			t.Fatal(err)
		}
		if !out.Committed || out.Cause != CauseNone || out.AccessErr != nil {
			t.Fatalf("outcome %+v, want committed", out)
		}
		// Attempts at 0, 0.25, 0.75, 1.75 and 3.75 s after activating.
		if at := f.decidedAt - time.Second - 3750*time.Millisecond; f.freshTries != 5 || at < 0 || at > PollInterval {
			t.Errorf("%d fresh attempts, confirmed %s after launch", f.freshTries, f.decidedAt)
		}
	})
}

// Transient failures until the window ends are a lockout, and the verdict
// carries ssh's reason.
func TestTransientFailuresUntilTheWindowEndsAreALockout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeHost{activation: time.Second, freshErr: errBusy}
		out, err := run(t, f, Options{ConfirmTimeout: 10 * time.Second}, Checks{})
		if err != nil {
			t.Fatal(err)
		}
		if !out.RolledBack || out.Cause != CauseLostAccess || !errors.Is(out.AccessErr, errBusy) {
			t.Fatalf("outcome %+v, want rolled back for lost access", out)
		}
		if !strings.Contains(f.decided, "closed by the host before authentication (kex_exchange_identification") {
			t.Errorf("decision %q lacks ssh's reason", f.decided)
		}
		// 0, .25, .75, 1.75, 3.75, 5.75, 7.75 s: the deadline is 9 s.
		if f.freshTries != 7 || f.decidedAt > 10*time.Second {
			t.Errorf("%d fresh attempts, rollback asked %s after launch", f.freshTries, f.decidedAt)
		}
	})
}

// An attempt stopped by the end of the window says so; an ssh stopped
// that way has no reason to give, and the verdict never reads "ssh to
// HOST failed: " with nothing after it.
func TestAnAttemptCutByTheWindowSaysSo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeHost{activation: time.Second, fresh: func(ctx context.Context, n int) error {
			<-ctx.Done() // connected, but the host is too slow to answer
			return fault.New("h", fault.SSH, "run ssh -v", "ssh to root@h failed: ")
		}}
		out, err := run(t, f, Options{ConfirmTimeout: 4 * time.Second}, Checks{})
		if err != nil {
			t.Fatal(err)
		}
		if !out.RolledBack || out.Cause != CauseLostAccess {
			t.Fatalf("outcome %+v, want rolled back for lost access", out)
		}
		msg := out.AccessErr.Error()
		if _, isFault := fault.As(out.AccessErr); isFault || !strings.Contains(msg, "no answer within the confirm window") || !strings.Contains(msg, "3s after it started") {
			t.Errorf("access error %q", msg)
		}
		// A cut attempt does not hide an earlier, telling failure.
		f = &fakeHost{activation: time.Second, fresh: func(ctx context.Context, n int) error {
			if n == 1 {
				return errBusy
			}
			<-ctx.Done()
			return ctx.Err()
		}}
		out, _ = run(t, f, Options{ConfirmTimeout: 4 * time.Second}, Checks{})
		if !errors.Is(out.AccessErr, errBusy) {
			t.Errorf("access error %v, want the dropped connection", out.AccessErr)
		}
	})
}

func TestHostTimesOutWhenTheDeployerLosesEverything(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeHost{activation: time.Second, freshErr: errBusy, lostAt: time.Second + PollInterval}
		start := time.Now()
		_, err := run(t, f, Options{ConfirmTimeout: 3 * time.Second}, Checks{})
		if err == nil || !strings.Contains(err.Error(), "lost contact") || !strings.Contains(err.Error(), "rolls back by itself") {
			t.Fatalf("err %v", err)
		}
		// The deployer gives up only after the host's window has passed.
		if time.Since(start) < time.Second+3*time.Second {
			t.Errorf("gave up after %s, before the host's window ended", time.Since(start))
		}
		synctest.Wait()
		time.Sleep(10 * time.Second)
		if f.decidedBy != "supervisor" || f.st.Phase != "rolled-back" {
			t.Errorf("host: decided by %q, state %+v; want the supervisor to roll back by itself", f.decidedBy, f.st)
		}
	})
}

func TestNewlyFailedUnitsRollBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeHost{code: 4, before: []string{"old.service"}, after: []string{"old.service", "web.service", "noise.service"}}
		out, err := run(t, f, Options{ConfirmTimeout: 3 * time.Second, IgnoreUnits: []string{"noise.service"}}, Checks{})
		if err != nil {
			t.Fatal(err)
		}
		if !out.RolledBack || out.Cause != CauseUnits || len(out.NewlyFailed) != 1 || out.NewlyFailed[0] != "web.service" {
			t.Fatalf("outcome %+v", out)
		}
		if !strings.Contains(out.Journals["web.service"], "Failed with result") || f.freshTries != 0 {
			t.Errorf("journals %v, fresh tries %d", out.Journals, f.freshTries)
		}
		if !strings.Contains(f.decided, "newly failed units web.service") {
			t.Errorf("decision %q", f.decided)
		}
	})
}

func TestAlreadyFailedUnitsDoNotRollBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeHost{code: 4, before: []string{"web.service"}, after: []string{"web.service"}}
		out, err := run(t, f, Options{ConfirmTimeout: 3 * time.Second}, Checks{})
		if err != nil || !out.Committed {
			t.Fatalf("outcome %+v, %v; want committed", out, err)
		}
	})
}

func TestNoRollbackOnFailureKeeps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeHost{code: 4, after: []string{"web.service"}}
		out, err := run(t, f, Options{ConfirmTimeout: 3 * time.Second, NoRollbackOnFailure: true}, Checks{})
		if err != nil || !out.Committed || !out.Kept || out.Cause != CauseUnits {
			t.Fatalf("outcome %+v, %v; want committed and kept", out, err)
		}
	})
}

func TestFailedActivationRollsBackAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeHost{code: 2}
		out, err := run(t, f, Options{ConfirmTimeout: 30 * time.Second}, Checks{})
		if err != nil || !out.RolledBack || out.Cause != CauseActivation || out.ActivationCode != 2 {
			t.Fatalf("outcome %+v, %v", out, err)
		}
		if f.decidedAt > time.Second {
			t.Errorf("rollback asked after %s", f.decidedAt)
		}
	})
}

func TestChecksAreRetriedUntilTheirTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Passes on the third try: committed.
		f := &fakeHost{check: func(n int) error {
			if n < 3 {
				return errors.New("connection refused")
			}
			return nil
		}}
		out, err := run(t, f, Options{ConfirmTimeout: 3 * time.Second}, Checks{Commands: []string{"curl -f localhost"}, Timeout: 5 * time.Second})
		if err != nil || !out.Committed {
			t.Fatalf("outcome %+v, %v", out, err)
		}

		// Never passes: rolled back once its timeout is spent.
		f = &fakeHost{check: func(int) error { return errors.New("HTTP 503 Service Unavailable") }}
		start := time.Now()
		out, err = run(t, f, Options{ConfirmTimeout: 3 * time.Second}, Checks{URLs: []string{"https://web1/health"}, Timeout: 5 * time.Second})
		if err != nil || !out.RolledBack || out.Cause != CauseCheck {
			t.Fatalf("outcome %+v, %v", out, err)
		}
		if !strings.Contains(out.FailedChecks[0], "check https://web1/health failed: HTTP 503") {
			t.Errorf("failed checks %q", out.FailedChecks)
		}
		if f.checks != 5 || f.decidedAt < 4*time.Second || time.Since(start) > 7*time.Second {
			t.Errorf("%d attempts, rollback asked after %s", f.checks, f.decidedAt)
		}
	})
}

// TestRetryPolicies drives the one retry loop with each policy on
// synctest's fake clock: which attempts run, when (offsets from the start
// on that clock), and what is returned.
func TestRetryPolicies(t *testing.T) {
	errBusy := errors.New("kex_exchange_identification: Connection closed by remote host")
	cutPolicy := retryPolicy{First: 500 * time.Millisecond, Max: 500 * time.Millisecond,
		Cut: func(after time.Duration) error { return &cutError{after: after} }}
	tests := []struct {
		name     string
		policy   retryPolicy
		deadline time.Duration
		// fail says what attempt n (1-based) returns; cut: it waits for
		// the deadline.
		fail    func(n int) (err error, cut bool)
		attempt []time.Duration // when each attempt started
		want    error           // errors.Is
		wantMsg string          // or a substring of the error
	}{
		{"fixed interval until the deadline", checkPolicy, 3500 * time.Millisecond,
			func(int) (error, bool) { return errSSH, false },
			[]time.Duration{0, time.Second, 2 * time.Second, 3 * time.Second}, errSSH, ""},
		{"fixed interval until it passes", checkPolicy, time.Hour,
			func(n int) (error, bool) {
				if n < 3 {
					return errBusy, false
				}
				return nil, false
			},
			[]time.Duration{0, time.Second, 2 * time.Second}, nil, ""},
		{"backoff doubles up to its maximum", confirmPolicy, 8 * time.Second,
			func(int) (error, bool) { return errBusy, false },
			[]time.Duration{0, 250 * time.Millisecond, 750 * time.Millisecond, 1750 * time.Millisecond, 3750 * time.Millisecond, 5750 * time.Millisecond, 7750 * time.Millisecond}, errBusy, ""},
		{"a definite failure stops at once", confirmPolicy, time.Hour,
			func(n int) (error, bool) {
				if n == 2 {
					return errSSH, false
				}
				return errBusy, false
			},
			[]time.Duration{0, 250 * time.Millisecond}, errSSH, ""},
		{"a check never stops early", checkPolicy, 2500 * time.Millisecond,
			func(int) (error, bool) { return errSSH, false },
			[]time.Duration{0, time.Second, 2 * time.Second}, errSSH, ""},
		{"too late ends the attempts", confirmPolicy, time.Hour,
			func(int) (error, bool) { return ErrTooLate, false },
			[]time.Duration{0}, ErrTooLate, ""},
		{"a cut attempt does not hide the failure before it", cutPolicy, 1200 * time.Millisecond,
			func(n int) (error, bool) { return errSSH, n == 3 },
			[]time.Duration{0, 500 * time.Millisecond, time.Second}, errSSH, ""},
		{"an attempt cut first says so", cutPolicy, 300 * time.Millisecond,
			func(int) (error, bool) { return errBusy, true },
			[]time.Duration{0}, nil, "no answer within the confirm window"},
		{"without Cut, the cut attempt's own error", checkPolicy, 300 * time.Millisecond,
			func(int) (error, bool) { return errBusy, true },
			[]time.Duration{0}, context.DeadlineExceeded, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				var at []time.Duration
				err := retry(t.Context(), start.Add(tc.deadline), tc.policy, func(ctx context.Context) error {
					at = append(at, time.Since(start))
					err, cut := tc.fail(len(at))
					if cut {
						<-ctx.Done()
						if err == errBusy && tc.policy.Cut == nil {
							return ctx.Err()
						}
					}
					return err
				})
				if diff := cmp.Diff(tc.attempt, at); diff != "" {
					t.Errorf("attempts (-want +got):\n%s", diff)
				}
				switch {
				case tc.wantMsg != "":
					if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
						t.Errorf("err %v, want one saying %q", err, tc.wantMsg)
					}
				case !errors.Is(err, tc.want):
					t.Errorf("err %v, want %v", err, tc.want)
				}
			})
		})
	}
}
