package fleet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/skiffdeploy/skiff/internal/activate"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/remote"
)

// nix-darwin hosts (darwinConfigurations.NAME) are deployed in the same run
// as NixOS hosts, with the same copy step, and activated the nix-darwin
// way: the system profile gets a new generation, then TOPLEVEL/activate-user
// runs as the login user (where the system has one) and TOPLEVEL/activate as
// root. There is no switch-to-configuration, no systemd and no boot
// default, so the host-side supervisor of NixOS hosts does not apply: the
// activation is plain, and skiff itself decides to keep it or roll back —
// after a fresh SSH connection proved access (with --magic-rollback, the
// default) and the configured health checks passed. Rolling back restores
// the previous generation (deleting the new one) and runs the previous
// system's activation again. A host that never had nix-darwin is deployed
// the same way: activating the built system directly needs no darwin-rebuild
// on the host.

// checkDarwinToplevel refuses a darwin host's system that is not a
// nix-darwin system (when it was built here, so skiff can look).
func checkDarwinToplevel(h flake.Host) error {
	if _, err := os.Stat(h.OutPath); err != nil {
		return nil // built elsewhere
	}
	for _, f := range []string{"activate", "darwin-version.json"} {
		if _, err := os.Stat(filepath.Join(h.OutPath, f)); err != nil {
			return fault.New(h.Name, fault.Build,
				"darwinConfigurations.NAME.config.system.build.toplevel must be a nix-darwin system",
				"%s is not a nix-darwin system (no %s); refusing to activate it", h.OutPath, f)
		}
	}
	return nil
}

// darwinMode refuses modes that mean nothing on nix-darwin.
func darwinMode(h flake.Host, m Mode) error {
	if m == Switch {
		return nil
	}
	return fault.New(h.Name, fault.Usage,
		"deploy nix-darwin hosts with --mode switch (the default); select the NixOS hosts by name or tag for other modes",
		"--mode %s is a NixOS mode: nix-darwin has no boot entries and no separate test activation", m)
}

// activateDarwin makes the built nix-darwin system the host's; the caller
// holds the host's deploy lock. The profile and the activation go as one
// step (remote.StartChange), which undoes a failed activation on the host;
// when neither a lockout proof nor health checks follow, the end of the
// deploy (end) travels with it.
func (r *run) activateDarwin(ctx context.Context, c *remote.Host, h flake.Host, st remote.State, res *Result, end *hostEnd) (status Status, err error) {
	r.waitOf(h.Name).set("skiff waits for the nix-darwin activation to end on the host (without a time limit: as long as it takes), then for the health checks; a failure restores the previous generation")
	if err := r.preActivationKeys(ctx, c, h); err != nil {
		return Failed, err
	}
	defer r.postActivationKeys(ctx, c, h, &status, &err)
	if r.InstallBootloader {
		r.report(h.Name, PhaseActivate, "nix-darwin has no boot loader: --install-bootloader changes nothing here")
	}
	if st.Current == "" && st.Profile == "" {
		r.report(h.Name, PhaseActivate, "no previous nix-darwin system: activating the built system directly (no darwin-rebuild needed)")
	}
	checks := checksOf(h)
	safety := r.safety(h)
	proof := safety.MagicRollback && !safety.NoLockoutProof
	if proof || len(checks.Commands)+len(checks.URLs) > 0 {
		end = nil // the host is needed after the activation
	}
	what := fmt.Sprintf("nix-darwin activation: activate-user as %s, then activate as root", c.Conn.Target.Login())
	change := remote.Change{Darwin: true, Toplevel: h.OutPath, NewGeneration: true, Before: st}
	var ch remote.Changed
	if c.OneStep(change) {
		ch, err = r.change(ctx, c, h.Name, change, what, r.endEarly(h, end))
	} else {
		ch, err = r.darwinSteps(ctx, c, h.Name, h.OutPath, 0)
	}
	if ch.ProfileErr != nil {
		return Failed, r.profileFailed(ctx, c, h, st, ch.ProfileErr)
	}
	res.NewGen = ch.Generation
	back := restore{st: st, newGen: ch.Generation, darwin: true}
	if err != nil {
		return r.rollBack(ctx, c, h.Name, back, res, nil, err)
	}
	if ch.ExitCode != 0 {
		return r.rollBack(ctx, c, h.Name, back, res, &ch, fault.New(h.Name, fault.Activation,
			"see the activation output above; fix the configuration and deploy again",
			"nix-darwin %s exited with %d", ch.Step, ch.ExitCode))
	}
	if safety.MagicRollback && safety.NoLockoutProof {
		r.report(h.Name, PhaseActivate, "no ssh to lose: the lockout proof is skipped")
	} else if proof {
		if _, err := c.RunPriv(ctx, "prove access over a new connection", true, "true"); err != nil {
			msg := err.Error()
			if fe, ok := fault.As(err); ok {
				msg = fe.Msg
			}
			return r.rollBack(ctx, c, h.Name, back, res, nil, fault.Wrap(err, h.Name, fault.SSH,
				fmt.Sprintf("the new configuration locks %s out: keep your key and sshd reachable, then deploy again", c.Conn.Target.Destination()),
				"lost SSH access after activation: a new connection failed (%s)", msg))
		}
	}
	if fails := r.darwinChecks(ctx, c, h); len(fails) > 0 {
		cause := fault.New(h.Name, Health, "fix what the check tests, or change deployment.healthChecks; --no-rollback-on-failure keeps the new system anyway",
			"%s", joinChecks(fails))
		if r.Safety.NoRollbackOnFailure {
			cause.Msg += "; the new system was kept (--no-rollback-on-failure)"
			return Failed, cause
		}
		return r.rollBack(ctx, c, h.Name, back, res, nil, cause)
	}
	return Deployed, nil
}

// darwinSteps is a nix-darwin change one step after the other, for a
// login other than root (whose activate-user runs as that login, not on
// the host's session): the profile (a new generation for toplevel, or
// generation gen when > 0), then the activation. A failed activation is
// not undone here.
func (r *run) darwinSteps(ctx context.Context, c *remote.Host, name, toplevel string, gen int) (remote.Changed, error) {
	var ch remote.Changed
	if gen > 0 {
		if err := c.SwitchGeneration(ctx, gen); err != nil {
			ch.ProfileErr = err
			return ch, nil
		}
		ch.Generation = gen
	} else {
		n, err := c.SetProfile(ctx, toplevel)
		if err != nil {
			ch.ProfileErr = err
			return ch, nil
		}
		ch.Generation = n
		r.report(name, PhaseProfile, "system profile at generation %d", n)
	}
	r.report(name, PhaseActivate, "nix-darwin activation: activate-user as %s, then activate as root", c.Conn.Target.Login())
	act, step, err := c.DarwinActivate(ctx, toplevel, r.outputLines(name))
	ch.Activation, ch.Step = act, step
	return ch, err
}

func joinChecks(fails []string) string {
	s := fails[0]
	for _, f := range fails[1:] {
		s += "; " + f
	}
	return s
}

// darwinChecks runs the host's health checks with activate's runner
// (commands on the host, URLs from here, each retried until the checks'
// timeout); nix-darwin has no systemd, so there are no unit checks. It
// returns what never passed.
func (r *run) darwinChecks(ctx context.Context, c *remote.Host, h flake.Host) []string {
	checks := checksOf(h)
	if len(checks.Commands) == 0 && len(checks.URLs) == 0 {
		return nil
	}
	r.report(h.Name, PhaseActivate, "running %d health check(s)", len(checks.Commands)+len(checks.URLs))
	return activate.RunChecks(ctx, &activate.Remote{Host: c}, checks)
}
