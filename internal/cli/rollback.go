package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiffdeploy/skiff/internal/activate"
	"github.com/skiffdeploy/skiff/internal/fleet"
)

type rollbackOptions struct {
	to                int
	targetUser        string
	targetHost        string
	installBootloader bool
	parallel          int
	json              bool
}

func newRollback(g *globals) *cobra.Command {
	var o rollbackOptions
	var safety activate.Options
	c := &cobra.Command{
		Use:   "rollback HOST... [--to GENERATION]",
		Short: "Switch hosts back to their previous (or a given) system generation",
		Long: `Rollback switches each host to the generation before the one its system
profile points at, or to generation N with --to N, with the same safety as a
deploy: the host's deploy lock, a supervisor on the host that activates the
generation with switch-to-configuration test, confirmation over a new ssh
connection and health checks; only then does the profile point at that
generation and does it become the boot default. No generation is added and
nothing is built; the flake gives the hosts' addresses and health checks.

` + exitCodeHelp,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			givenSafety(cmd.Flags(), &safety)
			return runRollback(cmd.Context(), g, o, safety, args)
		},
	}
	f := c.Flags()
	f.IntVar(&o.to, "to", 0, "switch to system generation `N` instead of the previous one")
	f.StringVar(&o.targetUser, "target-user", "", "log in as `USER` on every host (default: deployment.targetUser, else root); a user other than root uses sudo -n")
	addTargetHostFlag(f, &o.targetHost)
	addRemoteSudoFlags(f)
	f.BoolVar(&o.installBootloader, "install-bootloader", false, "(re)install each NixOS host's boot loader as the generation becomes its boot default, as nixos-rebuild --install-bootloader does")
	f.IntVarP(&o.parallel, "parallel", "p", 10, "roll back at most `N` hosts at once")
	f.BoolVar(&o.json, "json", false, "print JSON Lines on stdout: an event per phase change, then a summary")
	addSafetyFlags(f, &safety)
	return withOn(c)
}

func runRollback(ctx context.Context, g *globals, o rollbackOptions, safety activate.Options, hosts []string) error {
	if o.to < 0 {
		return usageError{errorf("--to must be a generation number")}
	}
	if err := checkHostFlags(o.parallel, o.targetUser); err != nil {
		return err
	}
	if err := checkTargetHost(o.targetHost); err != nil {
		return err
	}
	if err := checkSafety(safety); err != nil {
		return err
	}
	rc, err := g.reach(hosts)
	if err != nil {
		return err
	}
	defer rc.close()
	ref := rc.ref
	run := g.runner()
	out := g.output(o.json)
	start := time.Now()
	rev := startRevision(g, ref)
	fo := g.hostOptions(rc, run, hosts, o.targetUser, o.targetHost, o.parallel)
	fo.InstallBootloader, fo.Reporter, fo.Safety = o.installBootloader, out.reporter, safety
	results, err := fleet.Rollback(ctx, fo, o.to)
	out.close()
	if err != nil {
		return err
	}
	code := exitCodeOf(results)
	if ctx.Err() != nil {
		code = ExitInterrupted
	}
	out.summary(results, code)
	recordRun(g, start, "rollback", ref, rev, "switch", results, code)
	for _, r := range results {
		if r.Err != nil {
			printError(g.stderr, r.Err)
		}
	}
	if code != ExitOK {
		return exitError{code}
	}
	return nil
}
