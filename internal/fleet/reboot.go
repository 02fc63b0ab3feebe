package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/skiffdeploy/skiff/internal/activate"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/remote"
)

// Reboots (--reboot) and "needs a reboot" notes.
//
// After a host's deploy succeeded, with --reboot: its failed units are
// read, it is told to reboot (systemctl reboot, or shutdown -r now on
// nix-darwin; the ssh command may die with the connection), its shared
// connection is closed (a master to a host that went away would hang), and
// fresh connections poll its boot id with backoff until it changed or
// RebootTimeout passed. Then the host must run the deployed system and
// have no unit failed that was not failed before the reboot. A host that
// does not come back, boots another system or has new failed units is
// Failed; nothing is rolled back (its boot default is the new system).
// deployHost runs this inside the host's wave, so a wave's hosts are back
// before the next wave starts: --canary makes a rolling reboot.
//
// Without --reboot, every successful deploy reads the host's boot state
// and notes when the running system's kernel, initrd or kernel modules are
// not the booted ones (NixOS hosts only: nix-darwin has no such notion).

// RebootClass is the error class of a host that did not come back from its
// reboot, or came back running another system.
const RebootClass fault.Class = "reboot"

// PhaseReboot is a host's reboot and the wait for its return.
const PhaseReboot Phase = "reboot"

// DefaultRebootTimeout is how long --reboot waits for a host by default.
const DefaultRebootTimeout = 10 * time.Minute

// Polling a rebooting host: the first wait, the growth and the longest.
const (
	rebootPollFirst = 500 * time.Millisecond
	rebootPollMax   = 10 * time.Second
	rebootAttempt   = 30 * time.Second // at most per poll (ssh's ConnectTimeout usually ends it first)
)

func (r *run) rebootTimeout() time.Duration {
	if r.RebootTimeout > 0 {
		return r.RebootTimeout
	}
	return DefaultRebootTimeout
}

// afterDeploy runs after a host's deploy ended with status and err: the
// reboot (--reboot) or the "needs a reboot" note. enter starts a phase of
// the host's pipeline; end.leave gives the host's session, lock and GC
// root back, which a reboot ends anyway (end.boot: the boot state was
// asked for already, with a plain activation).
func (r *run) afterDeploy(ctx context.Context, c *remote.Host, h flake.Host, status Status, err error, res *Result, enter func(Phase), end *hostEnd) (Status, error) {
	leave := end.leave
	if status != Deployed && status != UpToDate || r.Mode == DryActivate {
		return status, err
	}
	if ctx.Err() != nil {
		if r.Reboot {
			res.Note = joinNote(res.Note, "not rebooted: the run was interrupted")
		}
		return status, err
	}
	var boot remote.Boot
	var berr error
	switch {
	case status == UpToDate && end.state != nil && (!r.Reboot || !wantsReboot(status, end.state.Boot, h)):
		// The state read that found the host up to date read its boot
		// state too (no round trip more), and no reboot is to come.
		leave()
		boot = end.state.Boot
	case r.Reboot:
		boot, berr = c.ReadBoot(ctx, false)
	case end.boot != nil:
		// Asked for with the activation, like the GC root's removal
		// and the release.
		leave()
		boot, berr = end.boot(ctx)
	default:
		// Without a reboot to come, the host is given back at once:
		// the boot state, the GC root's removal and the release go in
		// one round trip.
		wait := c.StartReadBoot(ctx)
		leave()
		boot, berr = wait(ctx)
	}
	if r.Reboot && wantsReboot(status, boot, h) {
		if berr != nil {
			return Failed, fmt.Errorf("before the reboot: %w", berr)
		}
		enter(PhaseReboot)
		return r.reboot(ctx, c, h, boot, status, res, leave)
	}
	if berr == nil && !h.Darwin() && boot.RebootRequired() {
		res.RebootRequired = true
		note := rebootNote(boot.Differ)
		res.Note = joinNote(res.Note, note)
		r.report(h.Name, PhaseActivate, "%s; deploy with --reboot, or reboot the host", note)
	}
	return status, err
}

// wantsReboot reports whether --reboot reboots the host: always after a
// deploy; a host that was up to date only when it does not run the system
// yet (deployed with --mode boot) or needs a reboot to run all of it.
func wantsReboot(status Status, b remote.Boot, h flake.Host) bool {
	if status == Deployed {
		return true
	}
	return b.Current != h.OutPath || (!h.Darwin() && b.RebootRequired())
}

// rebootNote says which parts of the running system need a reboot.
func rebootNote(differ []string) string {
	return fmt.Sprintf("needs a reboot: the running system's %s %s not the booted system's", andList(differ), isAre(differ))
}

func isAre(s []string) string {
	if len(s) == 1 {
		return "is"
	}
	return "are"
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// reboot reboots the host and checks what it came back with.
func (r *run) reboot(ctx context.Context, c *remote.Host, h flake.Host, before remote.Boot, status Status, res *Result, leave func()) (Status, error) {
	start := time.Now()
	var failedBefore []string
	checkUnits := !h.Darwin()
	if checkUnits {
		units, err := c.FailedUnits(ctx)
		switch {
		case errors.Is(err, remote.ErrNoSystemd):
			checkUnits = false
		case err != nil:
			return Failed, err
		}
		failedBefore = units
	}
	how := "systemctl reboot"
	if h.Darwin() {
		how = "shutdown -r now"
	}
	timeout := r.rebootTimeout()
	r.report(h.Name, PhaseReboot, "rebooting (%s); waiting up to %s for it to come back", how, timeout)
	// The session would die with the host: the steps after the reboot
	// run on their own connections.
	leave()
	if err := c.Reboot(ctx, h.Darwin()); err != nil {
		if _, ok := fault.As(err); ok {
			return Failed, err
		}
		return Failed, fault.Wrap(err, h.Name, RebootClass,
			fmt.Sprintf("reboot it by hand (\"%s\")", c.Conn.ByHand(c.PrivArgv(strings.Fields(how)...)...)),
			"%s failed: %v; the host was not rebooted and runs %s", how, err, orNone(before.Current))
	}
	// The shared connection dies with the host; a master that does not
	// know it yet would hang the next command.
	c.Conn.Close(context.WithoutCancel(ctx))
	boot, err := r.waitBoot(ctx, c, before.ID, timeout)
	if err != nil {
		if ctx.Err() != nil {
			return Failed, interrupted(h.Name, "while waiting for the host to come back from its reboot",
				fmt.Sprintf("the deploy itself succeeded; the host was rebooting into its boot default %s", h.OutPath))
		}
		return Failed, fault.Wrap(err, h.Name, RebootClass,
			fmt.Sprintf("check the host from its console: it should boot its boot default %s; raise --reboot-timeout if it is only slow", h.OutPath),
			"%s", notBack(timeout, before, err))
	}
	back := since(start)
	if boot.Current != h.OutPath {
		return Failed, fault.New(h.Name, RebootClass,
			"check the host's boot loader: its system profile's newest generation is the deployed system, which it did not boot; deploy again or reboot it by hand",
			"%s", wrongSystem(boot, h.OutPath))
	}
	res.Rebooted = true
	res.RebootRequired = boot.RebootRequired()
	// Keys in /run (NixOS's /run/keys) are gone with the old boot.
	r.mu.Lock()
	ks := r.keys[h.Name]
	r.mu.Unlock()
	if len(ks) > 0 {
		r.report(h.Name, PhaseReboot, "writing its %d key(s) again: %s", len(ks), keyPaths(ks))
		if err := c.WriteKeys(ctx, ks); err != nil {
			return Failed, err
		}
	}
	if checkUnits {
		after, err := c.FailedUnits(ctx)
		if err != nil {
			return Failed, fmt.Errorf("after the reboot: %w", err)
		}
		if newly := activate.NewlyFailed(failedBefore, after, r.Safety.IgnoreUnits); len(newly) > 0 {
			res.FailedUnits = newly
			return Failed, fault.New(h.Name, fault.Units,
				fmt.Sprintf("see why with \"%s\"; the host runs the new system", c.Conn.ByHand(c.PrivArgv("journalctl", "-b", "-u", newly[0], "-n", "50")...)),
				"came back from its reboot with newly failed units: %s", andList(newly))
		}
	}
	r.report(h.Name, PhaseReboot, "back after %s: new boot id, runs %s", back, boot.Current)
	return status, nil
}

// waitBoot polls the host over fresh connections until its boot id is no
// longer old, for at most timeout; the error is the last poll's.
func (r *run) waitBoot(ctx context.Context, c *remote.Host, old string, timeout time.Duration) (remote.Boot, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := rebootPollFirst
	var last error
	for {
		actx, acancel := context.WithTimeout(wctx, rebootAttempt)
		b, err := c.ReadBoot(actx, true)
		acancel()
		switch {
		case err == nil && b.ID != "" && b.ID != old:
			return b, nil
		case err == nil:
			last = errStillUp
		case wctx.Err() == nil:
			last = err
		}
		select {
		case <-wctx.Done():
			if last == nil {
				last = wctx.Err()
			}
			return remote.Boot{}, last
		case <-time.After(wait):
		}
		wait = min(wait*3/2, rebootPollMax)
	}
}

// errStillUp is a poll that found the host still running its old boot.
var errStillUp = errors.New("the host still runs the boot it had before the reboot (same boot id)")

// notBack explains a host that did not come back within timeout.
func notBack(timeout time.Duration, before remote.Boot, last error) string {
	why := last.Error()
	if fe, ok := fault.As(last); ok {
		why = fe.Msg
	}
	return fmt.Sprintf("did not come back within %s of the reboot (last try: %s); before the reboot it ran %s", timeout, why, orNone(before.Current))
}

// wrongSystem explains a host that came back running something else than
// the deployed system.
func wrongSystem(b remote.Boot, want string) string {
	msg := fmt.Sprintf("came back from its reboot running %s, not the deployed system %s", orNone(b.Current), want)
	if b.Booted != b.Current {
		msg += " (booted " + orNone(b.Booted) + ")"
	}
	return msg
}
