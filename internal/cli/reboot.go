package cli

import (
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/fleet"
	"github.com/skiffdeploy/skiff/internal/remote"
)

// rebootOptions are deploy's --reboot flags.
type rebootOptions struct {
	reboot  bool
	timeout time.Duration
}

func addRebootFlags(f *pflag.FlagSet, o *rebootOptions) {
	f.BoolVar(&o.reboot, "reboot", false, "reboot each deployed host (rolling, with the waves) and wait until it runs the new system with no newly failed unit")
	f.DurationVar(&o.timeout, "reboot-timeout", fleet.DefaultRebootTimeout, "with --reboot: how long to wait for a host to come back")
}

// check refuses --reboot where it makes no sense: test and dry-activate
// leave the boot default alone, so a reboot would return to the old
// system.
func (o rebootOptions) check(mode fleet.Mode) error {
	if o.timeout <= 0 {
		return usageError{errorf("--reboot-timeout must be positive")}
	}
	if o.reboot && !mode.MakesGeneration() {
		why := "test activates without changing the boot default, so the reboot would return to the old system"
		if mode == fleet.DryActivate {
			why = "dry-activate changes nothing, so there is nothing to reboot into"
		}
		return usageError{fault.New("", fault.Usage,
			"use --mode switch or --mode boot with --reboot",
			"--reboot with --mode %s: %s", mode, why)}
	}
	return nil
}

// rebootColumn is status's REBOOT column: "needed (kernel, initrd)", "no"
// or "-" when unknown.
func rebootColumn(b *remote.Boot) string {
	switch {
	case b == nil:
		return "-"
	case b.RebootRequired():
		return "needed (" + strings.Join(b.Differ, ", ") + ")"
	}
	return "no"
}
