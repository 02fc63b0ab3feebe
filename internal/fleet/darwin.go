package fleet

import (
	"context"
	"errors"
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
// holds the host's deploy lock.
func (r *run) activateDarwin(ctx context.Context, c *remote.Host, h flake.Host, st remote.State, res *Result) (status Status, err error) {
	r.waitOf(h.Name).set("skiff waits for the nix-darwin activation to end on the host (without a time limit: as long as it takes), then for the health checks; a failure restores the previous generation")
	if err := r.preActivationKeys(ctx, c, h); err != nil {
		return Failed, err
	}
	defer r.postActivationKeys(ctx, c, h, &status, &err)
	if st.Current == "" && st.Profile == "" {
		r.report(h.Name, PhaseActivate, "no previous nix-darwin system: activating the built system directly (no darwin-rebuild needed)")
	}
	gen, err := c.SetProfile(ctx, h.OutPath)
	if err != nil {
		return Failed, r.profileFailed(ctx, c, h, st, err)
	}
	res.NewGen = gen
	r.report(h.Name, PhaseProfile, "system profile at generation %d", gen)
	r.report(h.Name, PhaseActivate, "nix-darwin activation: activate-user as %s, then activate as root", c.Conn.Target.Login())
	act, step, err := c.DarwinActivate(ctx, h.OutPath, &lineWriter{host: h.Name, r: r})
	if err != nil {
		return r.darwinRollback(ctx, c, h, st, res, err)
	}
	if act.ExitCode != 0 {
		return r.darwinRollback(ctx, c, h, st, res, fault.New(h.Name, fault.Activation,
			"see the activation output above; fix the configuration and deploy again",
			"nix-darwin %s exited with %d", step, act.ExitCode))
	}
	if r.Safety.MagicRollback && r.Safety.NoLockoutProof {
		r.report(h.Name, PhaseActivate, "no ssh to lose: the lockout proof is skipped")
	} else if r.Safety.MagicRollback {
		if _, err := c.RunPriv(ctx, "prove access over a new connection", true, "true"); err != nil {
			msg := err.Error()
			if fe, ok := fault.As(err); ok {
				msg = fe.Msg
			}
			return r.darwinRollback(ctx, c, h, st, res, fault.Wrap(err, h.Name, fault.SSH,
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
		return r.darwinRollback(ctx, c, h, st, res, cause)
	}
	return Deployed, nil
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

// darwinRollback returns a nix-darwin host whose activation failed to what
// it ran before: the previous generation again (the new one deleted) and
// the previous system's activation run again.
func (r *run) darwinRollback(ctx context.Context, c *remote.Host, h flake.Host, st remote.State, res *Result, cause error) (Status, error) {
	r.report(h.Name, PhaseRollback, "restoring the previous system")
	var errs []error
	if res.NewGen > 0 {
		if err := c.RestoreProfile(ctx, st.Generation, res.NewGen); err != nil {
			errs = append(errs, err)
		}
		res.NewGen = 0
	}
	old := st.Current
	if old == "" {
		old = st.Profile
	}
	if old != "" {
		act, step, err := c.DarwinActivate(ctx, old, &lineWriter{host: h.Name, r: r})
		if err != nil {
			errs = append(errs, err)
		} else if act.ExitCode != 0 {
			errs = append(errs, fmt.Errorf("re-activating %s: %s exited with %d", old, step, act.ExitCode))
		}
	}
	if len(errs) > 0 {
		return Failed, fault.Wrap(errors.Join(append([]error{cause}, errs...)...), h.Name, fault.Activation,
			fmt.Sprintf("the rollback failed too: check the host (\"%s\" may still work)", c.Conn.ByHand()),
			"%v; rolling back failed: %v", cause, errors.Join(errs...))
	}
	if old == "" {
		if fe, ok := fault.As(cause); ok {
			fe.Msg += "; there was no previous nix-darwin system to return to (the system profile was removed)"
		}
		return Failed, cause
	}
	back := "the previous system " + old
	if st.Generation > 0 {
		back = fmt.Sprintf("generation %d (%s)", st.Generation, old)
	}
	if fe, ok := fault.As(cause); ok {
		fe.Msg += "; rolled back to " + back
	}
	r.report(h.Name, PhaseRollback, "rolled back to %s", back)
	return RolledBack, cause
}

// rollbackDarwin switches a nix-darwin host's profile to generation
// target and activates it; if that activation fails, the host returns to
// the generation it ran.
func (r *run) rollbackDarwin(ctx context.Context, c *remote.Host, h flake.Host, st remote.State, target remote.ProfileGen) (Status, error) {
	if err := c.SwitchGeneration(ctx, target.Number); err != nil {
		return Failed, err
	}
	act, step, err := c.DarwinActivate(ctx, target.Path, &lineWriter{host: h.Name, r: r})
	if err == nil && act.ExitCode == 0 {
		return Deployed, nil
	}
	cause := err
	if cause == nil {
		cause = fmt.Errorf("nix-darwin %s of generation %d exited with %d", step, target.Number, act.ExitCode)
	}
	var errs []error
	if st.Generation > 0 {
		if err := c.SwitchGeneration(ctx, st.Generation); err != nil {
			errs = append(errs, err)
		}
	}
	if st.Current != "" {
		if act, _, err := c.DarwinActivate(ctx, st.Current, &lineWriter{host: h.Name, r: r}); err != nil {
			errs = append(errs, err)
		} else if act.ExitCode != 0 {
			errs = append(errs, fmt.Errorf("re-activating %s exited with %d", st.Current, act.ExitCode))
		}
	}
	if len(errs) > 0 {
		return Failed, fault.Wrap(errors.Join(append([]error{cause}, errs...)...), h.Name, fault.Activation,
			"check the host: neither generation activated cleanly",
			"%v; returning to generation %d failed: %v", cause, st.Generation, errors.Join(errs...))
	}
	return Failed, fault.Wrap(cause, h.Name, fault.Activation, "see the activation output above",
		"%v; the host runs generation %d again", cause, st.Generation)
}
