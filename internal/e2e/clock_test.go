package e2e

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/lab"
)

// Tests of the confirm window under a stepped wall clock and a busy sshd.

// stepClock makes the wall clock of a lab host jump by seconds (its
// monotonic clock does not move), as chronyd or timesyncd do when
// activation restarts them.
func stepClock(seconds string) string {
	return "echo " + seconds + " >" + lab.ClockOffsetFile
}

// activationState reads the state of the host's only activation supervisor.
func activationState(l *lab.Lab, name string) string {
	out, _ := l.Host(name).Exec(context.Background(), "sh", "-c", "cat /run/skiff/act-*/state 2>/dev/null")
	return strings.TrimSpace(out)
}

// waitActivation waits, at most bound, until ok holds for the host's
// supervisor state, and returns the state.
func waitActivation(l *lab.Lab, name string, bound time.Duration, ok func(string) bool) string {
	state := ""
	for deadline := time.Now().Add(bound); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if state = activationState(l, name); ok(state) {
			break
		}
	}
	return state
}

func finalState(s string) bool {
	return strings.HasPrefix(s, "rolled-back") || strings.HasPrefix(s, "committed") || strings.HasPrefix(s, "stranded")
}

// The clock is stepped forward by an hour right after activation (by the
// health check, while the deployer is about to confirm): the window is
// counted on the host's monotonic clock, so the healthy system commits.
func TestClockSteppedForwardDuringTheWindowStillCommits(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "clk1"})
	deployOK(t, l, "clk1", 1, "")
	r := skiffOn(t, l, "deploy", "clk1", confirm, "--flake", writeFlake(t, host("clk1",
		`generation = 2; deployment.healthChecks = { commands = [ "`+stepClock("3600")+`" ]; timeout = 2; };`)))
	wantCode(t, r, 0)
	if got := labHost(t, l, "clk1", "cat", lab.ClockOffsetFile); got != "3600" {
		t.Fatalf("clock offset %q: the check did not step the clock", got)
	}
	if got := profile(t, l, "clk1"); got != "system-2-link" {
		t.Errorf("profile %q, want system-2-link", got)
	}
	if got := activationState(l, "clk1"); !strings.HasPrefix(got, "committed") {
		t.Errorf("supervisor state %q, want committed", got)
	}
}

// The clock is stepped back by an hour right after activation and the
// deployer is gone: the host still rolls back when the window ends, not an
// hour later.
func TestClockSteppedBackDuringTheWindowStillRollsBack(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "clk2"})
	deployOK(t, l, "clk2", 1, "")
	good := running(t, l, "clk2")
	slow := writeFlake(t, host("clk2", "generation = 2; activationDelay = 2;"))
	if _, _, seen := signalAt(t, l, syscall.SIGKILL, "clk2| activating the configuration", "deploy", "clk2", confirm, "--flake", slow); !seen {
		t.Fatal("the deploy never reached the supervised activation")
	}
	if s := waitActivation(l, "clk2", 30*time.Second, func(s string) bool { return s != "activating" && s != "" }); !strings.HasPrefix(s, "activated") {
		t.Fatalf("supervisor state %q, want activated", s)
	}
	labHost(t, l, "clk2", "sh", "-c", stepClock("-3600"))

	// The window is 5 s; the bound is far below the hour of the step.
	state := waitActivation(l, "clk2", 25*time.Second, finalState)
	wantContains(t, "supervisor state", state, "rolled-back 0 not confirmed within 5s: the deployer vanished or lost SSH access")
	if got := running(t, l, "clk2"); got != good {
		t.Errorf("running %q, want the previous %q", got, good)
	}
	if got := generationsOn(t, l, "clk2"); got != "system-1-link" {
		t.Errorf("generations %q, want only system-1-link", got)
	}
}

// holdStartup opens a TCP connection to the host's sshd and holds it
// unauthenticated for d: with MaxStartups 1, sshd drops every other new
// connection meanwhile, as a busy sshd does.
func holdStartup(t *testing.T, h *lab.Host, d time.Duration) {
	c, err := net.Dial("tcp", net.JoinHostPort(h.Addr, "22"))
	if err != nil {
		t.Errorf("hold a connection to %s: %v", h.Name, err)
		return
	}
	go func() {
		time.Sleep(d)
		c.Close()
	}()
}

func drops(t *testing.T, h *lab.Host) int {
	b, err := os.ReadFile(filepath.Join(h.Dir, "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "past MaxStartups")
}

func TestBusySSHDoesNotRollBackAHealthyHost(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "busy1", MaxStartups: "1"})
	h := l.Host("busy1")
	deployOK(t, l, "busy1", 1, "")

	// sshd drops the fresh connections of the first seconds after
	// activating: they are tried again, and the deploy commits.
	before := drops(t, h)
	r := runAt(t, l, "busy1| activating the configuration", func(*skiffProc) { holdStartup(t, h, 4*time.Second) },
		"deploy", "busy1", "--confirm-timeout=10s", "--flake",
		writeFlake(t, host("busy1", "generation = 2; activationDelay = 2;")))
	if r.code != 0 {
		t.Errorf("exit %d, want 0 (committed)", r.code)
	}
	if got := profile(t, l, "busy1"); got != "system-2-link" {
		t.Errorf("profile %q, want system-2-link", got)
	}
	if drops(t, h) == before {
		t.Error("sshd dropped no connection: the test did not make the host busy")
	}

	// Dropped for the whole window, it is a lockout, and the message
	// carries ssh's reason.
	r = runAt(t, l, "busy1| activating the configuration", func(*skiffProc) { holdStartup(t, h, 20*time.Second) },
		"deploy", "busy1", confirm, "--flake",
		writeFlake(t, host("busy1", "generation = 3; activationDelay = 2;")))
	if r.code != 4 {
		t.Errorf("exit %d, want 4 (rolled back)", r.code)
	}
	wantContains(t, "error", r.stderr, "busy1: lost SSH access after activation: a new connection failed",
		"closed by the host before authentication (kex_exchange_identification", "rolled back to generation 2")
	if strings.Contains(r.stderr, "failed: )") {
		t.Error("the verdict has an empty reason")
	}
}
