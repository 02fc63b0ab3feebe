package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/skiffdeploy/skiff/internal/activate"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/keys"
	"github.com/skiffdeploy/skiff/internal/remote"
)

// Health is the error class of a failed health check.
const Health fault.Class = "health"

// activate makes the built system the host's; the caller holds the
// host's deploy lock. switch with magic rollback (the default) goes
// through the supervised protocol of package activate: the boot default changes only
// once the deployer has proved, over a fresh connection, that it can still
// get in and the host is healthy. boot, test, dry-activate and
// --magic-rollback=false keep NixOS's meanings (plainActivate).
func (r *run) activate(ctx context.Context, c *remote.Host, h flake.Host, st remote.State, res *Result, end *hostEnd) (status Status, err error) {
	if h.Darwin() {
		return r.activateDarwin(ctx, c, h, st, res, end)
	}
	if r.Mode == DryActivate {
		return r.plainActivate(ctx, c, h, st, res, nil)
	}
	if err := r.preActivationKeys(ctx, c, h); err != nil {
		return Failed, err
	}
	defer r.postActivationKeys(ctx, c, h, &status, &err)
	if r.Mode == Switch && r.safety(h).MagicRollback {
		if st.Current != "" {
			return r.supervised(ctx, c, h, activate.Plan{New: h.OutPath, Old: st.Current, InstallBootloader: r.InstallBootloader}, checksOf(h), st, res, r.endEarly(h, end))
		}
		r.report(h.Name, PhaseActivate, "no running system to return to: plain switch for this first deploy")
	}
	return r.plainActivate(ctx, c, h, st, res, end)
}

// safety is the safety options for host h: the command line's, with the
// host's own magic rollback and confirm window from the flake where the
// command line did not set them.
func (r *run) safety(h flake.Host) activate.Options {
	return r.Safety.ForHost(h.Deployment.MagicRollback, time.Duration(h.Deployment.ConfirmTimeout)*time.Second)
}

// BriefLockWait bounds how long a deploy waits for a brief holder of the
// host's deploy lock (LockOwner.Brief: skiff gc, skiff upload-keys).
const BriefLockWait = 10 * time.Minute

// lock takes the host's deploy lock. A brief holder (skiff gc, skiff
// upload-keys) is waited for (it is short, and it skips hosts a deploy
// holds); another deploy is not.
func (r *run) lock(ctx context.Context, c *remote.Host) (*remote.Lock, error) {
	return r.lockWith(ctx, c, func() (*remote.Lock, error) {
		return c.Lock(ctx, LockOwner(""), r.Safety.BreakLock)
	})
}

// lockWith is lock taking the lock with take (tried again while skiff gc
// or skiff upload-keys holds it).
func (r *run) lockWith(ctx context.Context, c *remote.Host, take func() (*remote.Lock, error)) (*remote.Lock, error) {
	var l *remote.Lock
	var err error
	waited := false
	for deadline := time.Now().Add(BriefLockWait); ; {
		l, err = take()
		var held *remote.HeldError
		if err == nil || !errors.As(err, &held) || !held.Holder.Brief() || time.Now().After(deadline) {
			break
		}
		if !waited {
			r.report(c.Name, PhaseActivate, "waiting for skiff %s of %s to finish (it holds the host's deploy lock)", held.Holder.Op, held.Holder)
			waited = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, err
	}
	switch l.Took {
	case "stale":
		r.report(c.Name, PhaseActivate, "took over a stale deploy lock of %s: its deployer is gone and nothing activates", l.Previous)
	case "broken":
		r.report(c.Name, PhaseActivate, "broke the deploy lock of %s (--break-lock)", l.Previous)
	}
	return l, nil
}

var ownerRE = regexp.MustCompile(`[^A-Za-z0-9._@-]`)

// LockOwner says who this skiff process is, for a host's deploy lock;
// op is remote.OpGC for skiff gc, empty for a deploy or rollback.
func LockOwner(op string) remote.LockOwner {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	machine, _ := os.Hostname()
	clean := func(s string) string { return ownerRE.ReplaceAllString(s, "_") }
	return remote.LockOwner{User: clean(name), Machine: clean(machine), PID: os.Getpid(), Since: time.Now().UTC().Format(time.RFC3339), Op: op}
}

func checksOf(h flake.Host) activate.Checks {
	hc := h.Deployment.HealthChecks
	return activate.Checks{Commands: hc.Commands, URLs: hc.URLs, Timeout: time.Duration(hc.Timeout) * time.Second}
}

// previous names what a rollback returns to.
func previous(st remote.State) string {
	if st.Generation > 0 && st.Current == st.Profile {
		return fmt.Sprintf("generation %d (%s)", st.Generation, st.Current)
	}
	return "the previous system " + st.Current
}

// supervised activates plan.New under the host's supervisor and reports
// how it ended: Deployed (confirmed, profile and boot default set),
// RolledBack (plan.Old runs again, boot default untouched) or Failed.
// end, when set, is the end of the deploy, sent alongside the proof (see
// activate.Remote.EndAlongside): it runs on the host once the supervisor
// has ended, and costs no round trip of its own.
func (r *run) supervised(ctx context.Context, c *remote.Host, h flake.Host, plan activate.Plan, checks activate.Checks, st remote.State, res *Result, end *hostEnd) (Status, error) {
	name, safety := h.Name, r.safety(h)
	window := safety.Confirm() + checks.Budget()
	confirms := "confirms over a new ssh connection"
	if safety.NoLockoutProof {
		confirms = "confirms on this machine"
	}
	r.waitOf(name).set("skiff waits for switch-to-configuration test to end on the host, then checks the host and "+confirms+
		" (at most %s after the activation ends; unconfirmed, the host returns to %s by itself)", window, previous(st))
	// The failed units before, as the state read under the lock found
	// them.
	before := st.FailedUnits
	if !st.Systemctl {
		r.report(name, PhaseActivate, "no systemctl on the host: failed units are not checked")
	}
	plan.ID = activate.NewID(time.Now())
	plan.Window = window
	r.report(name, PhaseActivate, "switch-to-configuration test under a supervisor (%s); unless confirmed within %s the host returns to %s",
		plan.StateDir(), plan.Window, previous(st))
	// The supervisor's last lines tell why a commit failed (nix-env's
	// error goes to its log, which arrives here as output).
	var tail []string
	target := &activate.Remote{Host: c, State: &st}
	var proving func()
	if end != nil {
		proving = func() { target.EndAlongside(plan, func() { end.send(ctx, r, c) }) }
	}
	out, err := activate.Run(ctx, target, plan, safety, checks, before, activate.Hooks{
		Proving: proving,
		Output: func(l string) {
			if tail = append(tail, l); len(tail) > supervisorTail {
				tail = tail[1:]
			}
			r.Reporter.Event(Event{Time: time.Now(), Host: name, Phase: PhaseActivate, Msg: l, Output: true})
		},
		Note: func(f string, a ...any) { r.report(name, PhaseActivate, f, a...) },
	})
	res.FailedUnits = out.NewlyFailed
	if err != nil {
		if _, ok := fault.As(err); ok {
			return Failed, err
		}
		return Failed, fault.Wrap(err, name, fault.Activation,
			fmt.Sprintf("see what the host did with \"%s\"", c.Conn.ByHand("cat", plan.StateDir()+"/state", plan.StateDir()+"/log")),
			"supervised activation: %v", err)
	}
	for _, u := range out.NewlyFailed {
		r.report(name, PhaseActivate, "%s failed; its last %d journal lines:", u, activate.JournalLines)
		for _, l := range strings.Split(out.Journals[u], "\n") {
			r.Reporter.Event(Event{Time: time.Now(), Host: name, Phase: PhaseActivate, Msg: l, Output: true})
		}
	}
	cause, class, hint := describe(out, r.Mode, c, plan)
	if out.Cause == activate.CauseCommit {
		if words, ok := r.diskFull(ctx, c, tail); ok {
			cause, class, hint = fmt.Sprintf("out of disk space: %s (%s)", out.Reason, words), fault.Disk, r.diskHint(name)
		} else if why := nixError(tail); why != "" {
			// nix-env's reason, from the supervisor's log.
			cause += ": " + why
		}
	}
	if out.Committed {
		res.NewGen = out.Generation
		r.report(name, PhaseProfile, "confirmed; system profile at generation %d, now the boot default", out.Generation)
		if out.Kept {
			return Failed, fault.New(name, class, hint, "%s; the new system was kept (--no-rollback-on-failure)", cause)
		}
		return Deployed, nil
	}
	res.NewGen = 0
	if out.Stranded {
		return Failed, fault.New(name, class, hint, "%s; there is no previous system to return to: the new system stays active, not the boot default", cause)
	}
	if out.RollbackCode != 0 && out.RollbackCode != 4 {
		return Failed, fault.New(name, fault.Activation,
			fmt.Sprintf("check the host from its console; the boot default is unchanged, so a reboot returns to %s", previous(st)),
			"%s; re-activating %s exited with %d (%s)", cause, previous(st), out.RollbackCode, remote.ActivationMeaning(out.RollbackCode))
	}
	if len(out.NewlyFailed) > 0 {
		// The previous system did not have them failed: forget their
		// failure, so that the next deploy sees them fail anew.
		_, _ = c.RunPriv(ctx, "reset failed units", false, append([]string{"systemctl", "reset-failed", "--"}, out.NewlyFailed...)...)
	}
	r.report(name, PhaseRollback, "rolled back to %s: %s", previous(st), cause)
	return RolledBack, fault.New(name, class, hint, "%s; rolled back to %s, the boot default is unchanged", cause, previous(st))
}

// supervisorTail is how many of the supervisor's last output lines are
// kept to explain a failed commit.
const supervisorTail = 20

// profileFailed explains a failure to set the system profile (the new
// generation) before activation: nothing was activated.
func (r *run) profileFailed(ctx context.Context, c *remote.Host, h flake.Host, st remote.State, err error) error {
	return r.outOfSpace(ctx, c, h.Name, "setting the system profile failed",
		fmt.Sprintf("nothing was activated, the host still runs %s", running(st)), err)
}

// describe names why a supervised activation was not kept as it was.
func describe(out activate.Outcome, mode Mode, c *remote.Host, plan activate.Plan) (string, fault.Class, string) {
	dest := c.Conn.Target.Destination()
	switch out.Cause {
	case activate.CauseActivation:
		return fmt.Sprintf("switch-to-configuration %s exited with %d (%s)", mode, out.ActivationCode, remote.ActivationMeaning(out.ActivationCode)),
			fault.Activation, "see the activation output above; fix the configuration and deploy again"
	case activate.CauseUnits:
		return "newly failed units " + andList(out.NewlyFailed) + " after activation", fault.Units,
			"see the journal lines above; fix the units and deploy again, or deploy with --ignore-unit UNIT or --no-rollback-on-failure"
	case activate.CauseCheck:
		return strings.Join(out.FailedChecks, "; "), Health,
			"fix what the check tests, or change deployment.healthChecks; --no-rollback-on-failure keeps the new system anyway"
	case activate.CauseLostAccess:
		class := fault.ClassOf(out.AccessErr)
		if class == "" {
			class = fault.SSH
		}
		msg := out.AccessErr.Error()
		if fe, ok := fault.As(out.AccessErr); ok {
			msg = fe.Msg
		}
		return "lost SSH access after activation: a new connection failed (" + msg + ")", class,
			fmt.Sprintf("the new configuration locks %s out (keys, sshd, firewall, sudo): keep your key in users.users.%s.openssh.authorizedKeys.keys and sshd reachable, then deploy again",
				dest, c.Conn.Target.Login())
	case activate.CauseUnconfirmed:
		return "not confirmed within " + plan.Window.String() + ": the deployer vanished or lost SSH access", fault.SSH,
			fmt.Sprintf("raise --confirm-timeout if the host is slow to reach; check the connection with \"%s\"", c.Conn.ByHand())
	case activate.CauseCommit:
		return out.Reason, fault.Activation,
			fmt.Sprintf("see %s/log on the host (\"%s\")", plan.StateDir(), c.Conn.ByHand("cat", plan.StateDir()+"/log"))
	}
	return "rolled back by the host: " + out.Reason, fault.Activation,
		fmt.Sprintf("see %s/log on the host (\"%s\")", plan.StateDir(), c.Conn.ByHand("cat", plan.StateDir()+"/log"))
}

// nixError is the last error Nix printed (nix-env failing to set the
// profile), with the lines that explain it: "don't know how to build
// these paths:" and the paths listed under it. Empty when there is none.
func nixError(lines []string) string {
	last := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "error:") {
			last = i
		}
	}
	if last < 0 {
		return ""
	}
	first := last
	for first > 0 && first > last-10 {
		p := lines[first-1]
		if !strings.HasPrefix(p, "  /") && !strings.HasPrefix(p, "don't know how to build") {
			break
		}
		first--
	}
	why := ""
	for _, l := range lines[first:last] {
		why += strings.TrimSpace(l) + " "
	}
	if why != "" {
		why = strings.TrimSpace(why) + "; "
	}
	return why + strings.TrimSpace(lines[last])
}

func andList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// plainActivate is NixOS's own behaviour: a new generation for switch and
// boot, then switch-to-configuration MODE, sent to the host as one step
// (remote.StartChange), so that switch-to-configuration never runs when
// the profile could not be set; a failed activation is rolled back, on
// the host in the same step. When nothing follows the activation on the
// host, the end of the deploy (end) travels with it: one round trip.
func (r *run) plainActivate(ctx context.Context, c *remote.Host, h flake.Host, st remote.State, res *Result, end *hostEnd) (Status, error) {
	r.waitOf(h.Name).set("skiff waits for switch-to-configuration %s to end on the host (without a time limit: as long as the activation takes)", r.Mode)
	if !r.Mode.MakesGeneration() {
		res.NewGen = 0
		r.report(h.Name, PhaseProfile, "%s creates no generation; the boot default stays generation %d", r.Mode, st.Generation)
	}
	change := remote.Change{Toplevel: h.OutPath, Action: string(r.Mode), NewGeneration: r.Mode.MakesGeneration(), Before: st,
		InstallBootloader: r.InstallBootloader && r.Mode.MakesGeneration()}
	ch, err := r.change(ctx, c, h.Name, change, fmt.Sprintf("switch-to-configuration %s", r.Mode), r.endEarly(h, end))
	res.FailedUnits = ch.FailedUnits
	if ch.ProfileErr != nil {
		return Failed, r.profileFailed(ctx, c, h, st, ch.ProfileErr)
	}
	res.NewGen = ch.Generation
	back := restore{st: st, newGen: ch.Generation, profile: r.Mode.MakesGeneration(), activated: r.Mode.Activates()}
	if err != nil {
		// The activation may or may not have run: put the profile back.
		return r.rollBack(ctx, c, h.Name, back, res, nil, err)
	}
	switch ch.ExitCode {
	case 0:
		return Deployed, nil
	case 4:
		units := strings.Join(ch.FailedUnits, ", ")
		if units == "" {
			units = "(unnamed)"
		}
		return Failed, fault.New(h.Name, fault.Units,
			fmt.Sprintf("the new system is active; see why with \"%s\", fix the configuration and deploy again, or go back with \"skiff rollback %s\"",
				c.Conn.ByHand("journalctl", "-u", firstOr(ch.FailedUnits, "UNIT"), "-n", "50"), h.Name),
			"switch-to-configuration %s exited with 4: units failed: %s", r.Mode, units)
	}
	err = fault.New(h.Name, fault.Activation,
		"see the activation output above; fix the configuration and deploy again",
		"switch-to-configuration %s exited with %d (%s)", r.Mode, ch.ExitCode, remote.ActivationMeaning(ch.ExitCode))
	return r.rollBack(ctx, c, h.Name, back, res, &ch, err)
}

// change sends ch to the host as one step (remote.StartChange), with the
// end of the deploy behind it when end is set, and waits for it. then
// says what the activation does; it is reported once the profile is set
// (at once when ch leaves the profile alone).
func (r *run) change(ctx context.Context, c *remote.Host, name string, ch remote.Change, then string, end *hostEnd) (remote.Changed, error) {
	if !ch.NewGeneration && ch.Generation == 0 {
		r.report(name, PhaseActivate, "%s", then)
	}
	p := c.StartChange(ctx, ch, r.outputLines(name), func(verb, rest string) {
		switch verb {
		case "generation":
			r.report(name, PhaseProfile, "system profile at generation %s", rest)
			r.report(name, PhaseActivate, "%s", then)
		case "rollback":
			r.report(name, PhaseRollback, "activation failed; restoring the previous system")
		}
	})
	if end != nil {
		// Nothing else goes to the host's session: its input ends
		// with the end, and the agent with it (no round trip to close
		// it afterwards).
		end.send(ctx, r, c)
		c.LeaveSession()
	}
	return p.Wait(ctx)
}

// restore is what a failed change of a host's system returns to.
type restore struct {
	st remote.State // what the host ran and booted before
	// newGen is the generation the change made, deleted on the way
	// back; switched: the change switched the profile to an existing
	// generation (skiff rollback), which is switched back.
	newGen   int
	switched bool
	// NixOS: profile, the change touched the profile (the previous boot
	// default is installed again); activated, the change activated (the
	// previous system is activated again). nix-darwin has no boot
	// default: the previous system is activated again.
	profile, activated bool
	darwin             bool
}

// back names what a rollback returns to.
func (b restore) back() string {
	old := b.st.Current
	if old == "" || (!b.darwin && !b.activated) {
		old = b.st.Profile
	}
	if b.st.Generation > 0 && old == b.st.Profile {
		return fmt.Sprintf("generation %d (%s)", b.st.Generation, old)
	}
	return "the previous system " + old
}

// rollBack is the deployer's one rollback, for a change of a host's
// system that failed with cause: the plain activation of NixOS hosts,
// nix-darwin's activation, lockout proof and checks, and skiff rollback's
// own switch. When the host undid the change itself in the same step
// (done.RolledBack, see remote.StartChange) it reports how that went;
// otherwise it restores b itself (see restoreSteps). The supervisor of a
// supervised activation rolls back on the host alone, with the same steps.
func (r *run) rollBack(ctx context.Context, c *remote.Host, name string, b restore, res *Result, done *remote.Changed, cause error) (Status, error) {
	var errs []error
	if done != nil && done.RolledBack {
		errs = done.RollbackErrs
	} else {
		r.report(name, PhaseRollback, "restoring the previous system")
		errs = r.restoreSteps(ctx, c, name, b)
	}
	res.NewGen = 0
	if len(errs) > 0 {
		return Failed, fault.Wrap(errors.Join(append([]error{cause}, errs...)...), name, fault.Activation,
			fmt.Sprintf("the rollback failed too: check the host from its console (\"%s\" may still work)", c.Conn.ByHand()),
			"%v; rolling back failed: %v", cause, errors.Join(errs...))
	}
	if b.st.Current == "" && b.st.Profile == "" {
		if fe, ok := fault.As(cause); ok {
			fe.Msg += "; there was no previous system to return to"
			if b.newGen > 0 {
				fe.Msg += " (the system profile was removed)"
			}
		}
		return Failed, cause
	}
	back := b.back()
	if fe, ok := fault.As(cause); ok {
		fe.Msg += "; rolled back to " + back
	} else {
		cause = fault.Wrap(cause, name, fault.Activation, "see the activation output above", "%v; rolled back to %s", cause, back)
	}
	r.report(name, PhaseRollback, "rolled back to %s", back)
	return RolledBack, cause
}

// restoreSteps returns the host to b from the deployer, one step after
// the other: the profile back at its generation (the new one deleted),
// then the previous system activated again (NixOS: its boot default
// installed again when the profile changed, and the running system
// re-activated when the change activated). They are plain.sh's steps.
func (r *run) restoreSteps(ctx context.Context, c *remote.Host, name string, b restore) []error {
	var errs []error
	out := r.outputLines(name)
	switch {
	case b.newGen > 0:
		if err := c.RestoreProfile(ctx, b.st.Generation, b.newGen); err != nil {
			errs = append(errs, err)
		}
	case b.switched && b.st.Generation > 0:
		if err := c.SwitchGeneration(ctx, b.st.Generation); err != nil {
			errs = append(errs, err)
		}
	}
	if b.darwin {
		old := b.st.Current
		if old == "" {
			old = b.st.Profile
		}
		if old != "" {
			if act, step, err := c.DarwinActivate(ctx, old, out); err != nil {
				errs = append(errs, err)
			} else if act.ExitCode != 0 {
				errs = append(errs, fmt.Errorf("re-activating %s: %s exited with %d", old, step, act.ExitCode))
			}
		}
		return errs
	}
	if b.profile && b.st.Profile != "" {
		if act, err := c.Switch(ctx, b.st.Profile, "boot", out); err != nil {
			errs = append(errs, err)
		} else if act.ExitCode != 0 {
			errs = append(errs, fmt.Errorf("re-installing %s as the boot default exited with %d", b.st.Profile, act.ExitCode))
		}
	}
	if b.activated && b.st.Current != "" {
		if act, err := c.Switch(ctx, b.st.Current, "test", out); err != nil {
			errs = append(errs, err)
		} else if act.ExitCode != 0 && act.ExitCode != 4 {
			errs = append(errs, fmt.Errorf("re-activating %s exited with %d", b.st.Current, act.ExitCode))
		}
	}
	return errs
}

// hostEnd is the end of a host's deploy: its boot state read, then its
// GC root removed and its deploy lock released (deployHost's leave). A
// plain activation after which nothing runs on the host sends the end
// with itself (send): one round trip.
type hostEnd struct {
	root  remote.Root
	lock  *remote.Lock
	leave func() // gives the host back (waits for what send sent)
	// boot waits for the boot state send asked for; nil: not asked yet.
	boot func(context.Context) (remote.Boot, error)
	// wait waits for the removal and release send sent; nil: not sent.
	wait func()
	// state is the host's state when it was found up to date: its boot
	// state was read with it.
	state *remote.State
}

// endEarly is end when the end of h's deploy may travel with its
// activation (nothing runs on the host after it: no reboot, no
// post-activation keys; a lock to release), else nil.
func (r *run) endEarly(h flake.Host, end *hostEnd) *hostEnd {
	if end == nil || end.lock == nil || r.Reboot || r.Mode == DryActivate {
		return nil
	}
	r.mu.Lock()
	post := len(keys.At(r.keys[h.Name], keys.PostActivation))
	r.mu.Unlock()
	if post > 0 {
		return nil
	}
	return end
}

// send sends the end of the deploy on the host's session behind what was
// sent before (the activation), without waiting: the boot state, the GC
// root's removal and the release.
func (e *hostEnd) send(ctx context.Context, r *run, c *remote.Host) {
	ctx = context.WithoutCancel(ctx)
	e.boot = c.StartReadBoot(ctx)
	un := c.StartUnroot(ctx, e.root)
	rel := e.lock.StartRelease()
	e.wait = func() {
		if _, err := un.Wait(ctx); err != nil {
			r.report(c.Name, PhaseDone, "could not remove the GC root %s (it goes at the next reboot): %v", e.root.Link(), err)
		}
		_, _ = rel.Wait(ctx)
	}
}

// sent waits for the end send sent, and reports whether it did.
func (e *hostEnd) sent() bool {
	if e == nil || e.wait == nil {
		return false
	}
	e.wait()
	return true
}

// Rollback switches each selected host to the generation before the one
// its profile points at, or to generation to when to > 0, with the same
// lock, supervisor, fresh-connection confirmation and health checks as a
// deploy. Nothing is built; the flake gives the hosts' addresses and
// checks.
func Rollback(ctx context.Context, o Options, to int) ([]Result, error) {
	o.Mode = Switch
	s, err := prepare(ctx, o, false, probeSession)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	r := s.run
	results := make([]Result, len(r.hosts))
	var g errgroup.Group
	g.SetLimit(max(r.Parallel, 1))
	for i, h := range r.hosts {
		g.Go(func() error {
			results[i] = r.rollbackHost(context.WithoutCancel(ctx), h, to)
			return nil
		})
	}
	_ = g.Wait()
	return results, nil
}

func (r *run) rollbackHost(ctx context.Context, h flake.Host, to int) Result {
	start := time.Now()
	res := Result{Host: h.Name, Mode: Switch}
	finish := func(status Status, err error) Result {
		if status == Failed && fault.ClassOf(err) == fault.Interrupted {
			status = Interrupted
		}
		res.Status, res.Err, res.Duration = status, err, time.Since(start)
		if err != nil {
			msg := err.Error()
			if fe, ok := fault.As(err); ok {
				msg = fe.Msg
			}
			r.report(h.Name, PhaseDone, "%s: %s", status, msg)
		} else if status == Deployed {
			// The status string is shared with --json and the history;
			// the line says what a rollback did.
			r.report(h.Name, PhaseDone, "switched to generation %d in %s", res.NewGen, since(start))
		} else {
			r.report(h.Name, PhaseDone, "%s in %s", status, since(start))
		}
		return res
	}
	r.mu.Lock()
	err := r.errs[h.Name]
	r.mu.Unlock()
	if err != nil {
		return finish(Failed, err)
	}
	c := r.conns[h.Name]
	// The session its probe opened, else one of its own (a probe that
	// could not open one: a sudo password, a command too long).
	sess := r.takeSession(h.Name)
	if sess == nil {
		if sess, err = c.OpenSession(ctx); err != nil {
			return finish(Failed, err)
		}
	}
	defer sess.Close()
	// The lock, and the generations read under it: one round trip.
	var st remote.State
	lock, err := r.lockWith(ctx, c, func() (*remote.Lock, error) {
		l, s, err := c.LockReadSystem(ctx, LockOwner(""), r.Safety.BreakLock)
		st = s
		return l, err
	})
	if err != nil {
		return finish(Failed, err)
	}
	defer lock.Release()
	res.OldPath, res.OldGen = st.Current, st.Generation
	gens := st.ProfileGens()
	var target remote.ProfileGen
	for _, g := range gens {
		if (to > 0 && g.Number == to) || (to == 0 && g.Number < st.Generation) {
			target = g
		}
	}
	if target.Number == 0 {
		var have []string
		for _, g := range gens {
			have = append(have, strconv.Itoa(g.Number))
		}
		list := "none"
		if len(have) > 0 {
			list = strings.Join(have, ", ")
		}
		what := "no generation before generation " + strconv.Itoa(st.Generation)
		if to > 0 {
			what = "no generation " + strconv.Itoa(to)
		}
		return finish(Failed, fault.New(h.Name, fault.Usage,
			fmt.Sprintf("the host's system generations: %s; pick one with --to N", list),
			"nothing to roll back to: the system profile has %s", what))
	}
	res.NewPath = target.Path
	if target.Number == st.Generation && target.Path == st.Current {
		res.NewGen = st.Generation
		return finish(UpToDate, nil)
	}
	from := fmt.Sprintf("generation %d (%s)", st.Generation, st.Current)
	if st.Current != st.Profile {
		from = fmt.Sprintf("%s (profile at generation %d)", st.Current, st.Generation)
	}
	r.report(h.Name, PhaseActivate, "switching from %s to generation %d (%s)", from, target.Number, target.Path)
	if h.Darwin() || !r.safety(h).MagicRollback || st.Current == "" {
		status, err := r.switchTo(ctx, c, h, st, target, &res)
		if status == Deployed {
			r.report(h.Name, PhaseActivate, "switched from %s to generation %d (%s)", from, target.Number, target.Path)
		}
		return finish(status, err)
	}
	status, err := r.supervised(ctx, c, h, activate.Plan{New: target.Path, Old: st.Current, Generation: target.Number, InstallBootloader: r.InstallBootloader}, checksOf(h), st, &res, nil)
	if status == Deployed {
		r.report(h.Name, PhaseActivate, "switched from %s to generation %d (%s)", from, target.Number, target.Path)
	}
	return finish(status, err)
}

// switchTo is skiff rollback without a supervisor (nix-darwin hosts, or
// --magic-rollback=false): the profile switched to generation target and
// that system activated, as one step (remote.StartChange); an activation
// that fails returns the host to the generation it ran (rollBack).
func (r *run) switchTo(ctx context.Context, c *remote.Host, h flake.Host, st remote.State, target remote.ProfileGen, res *Result) (Status, error) {
	change := remote.Change{Darwin: h.Darwin(), Toplevel: target.Path, Action: "switch", Generation: target.Number, Before: st,
		InstallBootloader: r.InstallBootloader && !h.Darwin()}
	what := "switch-to-configuration switch"
	if h.Darwin() {
		what = "nix-darwin activation"
	}
	var ch remote.Changed
	var err error
	if c.OneStep(change) {
		ch, err = r.change(ctx, c, h.Name, change, what, nil)
	} else {
		ch, err = r.darwinSteps(ctx, c, h.Name, target.Path, target.Number)
	}
	if ch.ProfileErr != nil {
		return Failed, ch.ProfileErr
	}
	back := restore{st: st, switched: true, profile: true, activated: true, darwin: h.Darwin()}
	if err != nil {
		return r.rollBack(ctx, c, h.Name, back, res, nil, err)
	}
	if ch.Activated(h.Darwin()) && ch.ExitCode == 0 {
		res.NewGen = target.Number
		return Deployed, nil
	}
	if h.Darwin() {
		err = fault.New(h.Name, fault.Activation, "see the activation output above",
			"nix-darwin %s of generation %d exited with %d", ch.Step, target.Number, ch.ExitCode)
	} else {
		err = fault.New(h.Name, fault.Activation, "see the activation output above",
			"switch-to-configuration switch of generation %d exited with %d (%s)", target.Number, ch.ExitCode, remote.ActivationMeaning(ch.ExitCode))
	}
	if !ch.RolledBack && ch.Activated(h.Darwin()) {
		// Units failed: the generation runs, as NixOS leaves it.
		res.NewGen = target.Number
		return Failed, err
	}
	return r.rollBack(ctx, c, h.Name, back, res, &ch, err)
}
