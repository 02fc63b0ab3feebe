package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/remote"
)

// activate makes the built system the host's: a new generation for switch
// and boot, then switch-to-configuration MODE. A failed activation is
// rolled back.
func (r *run) activate(ctx context.Context, c *remote.Host, h flake.Host, st remote.State, res *Result) (Status, error) {
	// Generation, then activation.
	if r.Mode.MakesGeneration() {
		gen, err := c.SetProfile(ctx, h.OutPath)
		if err != nil {
			return Failed, err
		}
		res.NewGen = gen
		r.report(h.Name, PhaseProfile, "system profile at generation %d", gen)
	} else {
		res.NewGen = 0
		r.report(h.Name, PhaseProfile, "%s creates no generation; the boot default stays generation %d", r.Mode, st.Generation)
	}
	r.report(h.Name, PhaseActivate, "switch-to-configuration %s", r.Mode)
	act, err := c.Switch(ctx, h.OutPath, string(r.Mode), &lineWriter{host: h.Name, r: r})
	res.FailedUnits = act.FailedUnits
	if err != nil {
		// The activation may or may not have run: put the profile back.
		return r.rollback(ctx, c, h, st, res, err)
	}
	switch act.ExitCode {
	case 0:
		return Deployed, nil
	case 4:
		units := strings.Join(act.FailedUnits, ", ")
		if units == "" {
			units = "(unnamed)"
		}
		return Failed, fault.New(h.Name, fault.Units,
			fmt.Sprintf("the new system is active; see why with \"ssh %s journalctl -u UNIT -n 50\", fix the configuration and deploy again, or go back with \"ssh %s sudo nixos-rebuild switch --rollback\"",
				c.Conn.Target.Destination(), c.Conn.Target.Destination()),
			"switch-to-configuration %s exited with 4: units failed: %s", r.Mode, units)
	}
	err = fault.New(h.Name, fault.Activation,
		"see the activation output above; fix the configuration and deploy again",
		"switch-to-configuration %s exited with %d (%s)", r.Mode, act.ExitCode, remote.ActivationMeaning(act.ExitCode))
	return r.rollback(ctx, c, h, st, res, err)
}

// rollback returns a host whose activation failed to what it ran and
// booted before: the profile is restored (the failed generation deleted)
// and the previous system activated again.
func (r *run) rollback(ctx context.Context, c *remote.Host, h flake.Host, st remote.State, res *Result, cause error) (Status, error) {
	r.report(h.Name, PhaseRollback, "activation failed; restoring the previous system")
	var errs []error
	if res.NewGen > 0 {
		if err := c.RestoreProfile(ctx, st.Generation, res.NewGen); err != nil {
			errs = append(errs, err)
		}
		res.NewGen = 0
	}
	if r.Mode.MakesGeneration() && st.Profile != "" {
		if _, err := c.Switch(ctx, st.Profile, "boot", &lineWriter{host: h.Name, r: r}); err != nil {
			errs = append(errs, err)
		}
	}
	if r.Mode.Activates() && st.Current != "" {
		if act, err := c.Switch(ctx, st.Current, "test", &lineWriter{host: h.Name, r: r}); err != nil {
			errs = append(errs, err)
		} else if act.ExitCode != 0 && act.ExitCode != 4 {
			errs = append(errs, fmt.Errorf("re-activating %s exited with %d", st.Current, act.ExitCode))
		}
	}
	if len(errs) > 0 {
		return Failed, fault.Wrap(errors.Join(append([]error{cause}, errs...)...), h.Name, fault.Activation,
			fmt.Sprintf("the rollback failed too: check the host from its console (\"ssh %s\" may still work)", c.Conn.Target.Destination()),
			"%v; rolling back failed: %v", cause, errors.Join(errs...))
	}
	if st.Current == "" && st.Profile == "" {
		return Failed, cause
	}
	back := "the previous system " + st.Current
	if st.Generation > 0 && r.Mode.MakesGeneration() {
		back = fmt.Sprintf("generation %d (%s)", st.Generation, st.Profile)
	}
	if fe, ok := fault.As(cause); ok {
		fe.Msg += "; rolled back to " + back
	}
	return RolledBack, cause
}
