package cli

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/skiffdeploy/skiff/internal/activate"
)

// addSafetyFlags defines the flags of the safe activation protocol
// (package activate) on f.
func addSafetyFlags(f *pflag.FlagSet, o *activate.Options) {
	f.DurationVar(&o.ConfirmTimeout, "confirm-timeout", activate.DefaultConfirmTimeout,
		"how long a host waits, after activating, for skiff to prove over a new ssh connection that it can still get in; otherwise the host returns to its previous system by itself; given, it wins over a host's own (deploy-rs's confirmTimeout)")
	f.BoolVar(&o.MagicRollback, "magic-rollback", true,
		"switch through the host-side supervisor (activate, confirm, check, then make it the boot default); false gives plain switch-to-configuration switch; given, it wins over a host's own (deploy-rs's magicRollback)")
	f.BoolVar(&o.NoRollbackOnFailure, "no-rollback-on-failure", false,
		"keep the new system even when units newly fail or health checks fail (the host is still reported failed)")
	f.StringArrayVar(&o.IgnoreUnits, "ignore-unit", nil, "never roll back because `UNIT` failed (repeatable)")
	f.BoolVar(&o.BreakLock, "break-lock", false, "take the host's deploy lock even when another deploy holds it")
}

// givenSafety records in o which of its flags the command line set: a
// host's own setting in the flake (deploy-rs's magicRollback,
// confirmTimeout) gives way to those only.
func givenSafety(f *pflag.FlagSet, o *activate.Options) {
	o.Given = activate.Given{MagicRollback: f.Changed("magic-rollback"), ConfirmTimeout: f.Changed("confirm-timeout")}
}

// checkSafety refuses safety settings that cannot work.
func checkSafety(o activate.Options) error {
	if o.ConfirmTimeout < time.Second {
		return usageError{errorf("--confirm-timeout must be at least 1s")}
	}
	if o.ConfirmTimeout > time.Hour {
		return usageError{errorf("--confirm-timeout must be at most 1h")}
	}
	for _, u := range o.IgnoreUnits {
		if u == "" || u[0] == '-' {
			return usageError{errorf("invalid --ignore-unit %q", u)}
		}
	}
	return nil
}
