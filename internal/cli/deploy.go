package cli

import (
	"context"
	"os"

	"github.com/spf13/cobra"

	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/fleet"
	"github.com/skiffdeploy/skiff/internal/transport"
	"github.com/skiffdeploy/skiff/internal/ui"
)

type deployOptions struct {
	mode       string
	targetUser string
	parallel   int
	force      bool
}

func newDeploy(g *globals) *cobra.Command {
	var o deployOptions
	c := &cobra.Command{
		Use:   "deploy [HOST...]",
		Short: "Build the hosts' systems locally, copy them and activate them",
		Long: `Deploy builds nixosConfigurations.HOST.config.system.build.toplevel locally,
copies the store paths each host lacks over SSH and runs
switch-to-configuration MODE there. Without HOST, every host of the flake is
deployed.

Modes (as nixos-rebuild):
  switch        new generation, boot default, activate now (default)
  boot          new generation and boot default; activate at next boot
  test          activate now; no generation, boot default unchanged
  dry-activate  print what activation would change; change nothing

` + exitCodeHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDeploy(cmd.Context(), g, o, args)
		},
	}
	f := c.Flags()
	f.StringVar(&o.mode, "mode", "switch", "`MODE`: switch, boot, test or dry-activate")
	f.StringVar(&o.targetUser, "target-user", "", "log in as `USER` on every host (default: deployment.targetUser, else root); a user other than root uses sudo -n")
	f.IntVarP(&o.parallel, "parallel", "p", 10, "deploy at most `N` hosts at once")
	f.BoolVar(&o.force, "force", false, "activate even hosts that already run the new system")
	return c
}

func runDeploy(ctx context.Context, g *globals, o deployOptions, hosts []string) error {
	mode, err := fleet.ParseMode(o.mode)
	if err != nil {
		return usageError{err}
	}
	if o.parallel < 1 {
		return usageError{errorf("--parallel must be at least 1")}
	}
	if o.targetUser != "" && !flake.ValidName(o.targetUser) {
		return usageError{errorf("invalid --target-user %q", o.targetUser)}
	}
	for _, h := range hosts {
		if !flake.ValidName(h) {
			return usageError{errorf("invalid host name %q: host names are flake attribute names (letters, digits, '_', '.', '-')", h)}
		}
	}
	ref, err := flake.ParseRef(g.flake)
	if err != nil {
		return err
	}
	dir, err := transport.NewControlDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sshOpts, err := g.sshOptionsFor(dir)
	if err != nil {
		return err
	}
	run := g.runner()
	results, err := fleet.Deploy(ctx, fleet.Options{
		Flake:    ref,
		Hosts:    hosts,
		Mode:     mode,
		User:     o.targetUser,
		SSH:      sshOpts,
		Parallel: o.parallel,
		Force:    o.force,
		Runner:   run,
		Nix:      g.nix(run),
		Reporter: &ui.Plain{W: g.stderr},
	})
	if err != nil {
		return err
	}
	ui.Summary(g.stdout, results)
	code := ExitOK
	for _, r := range results {
		if r.Err != nil {
			printError(g.stderr, r.Err)
		}
		switch {
		case r.Status == fleet.RolledBack:
			code = ExitRolledBack
		case r.Status == fleet.Failed && code != ExitRolledBack:
			code = ExitHostsFailed
		}
	}
	if code != ExitOK {
		return exitError{code}
	}
	return nil
}
