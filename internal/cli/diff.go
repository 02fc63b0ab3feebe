package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/skiffdeploy/skiff/internal/diff"
	"github.com/skiffdeploy/skiff/internal/fleet"
)

type diffOptions struct {
	targetUser string
	targetHost string
	parallel   int
	json       bool
}

func newDiff(g *globals) *cobra.Command {
	var o diffOptions
	c := &cobra.Command{
		Use:   "diff [HOST|GLOB|@TAG...]",
		Short: "Show what a deploy would change on each host, changing nothing",
		Long: `Diff builds the hosts' systems like deploy and, for each host in parallel,
compares them with what the host runs:

  - packages added, removed and changed (old → new version), from the two
    closures' store path names, and the size change;
  - the units activation would stop, start, restart or reload, as
    switch-to-configuration dry-activate reports them;
  - "up to date" when the host runs exactly the new system and boots it by
    default (a deploy would change nothing); when it runs it but boots
    another (after a deploy in mode test), that a deploy would make it the
    boot default; or why the host could not be checked (unreachable, build
    failed, ...).

To run dry-activate, the paths a host lacks are copied to it (a later deploy
need not copy them again). Nothing else changes: no generation is made and
the running system stays. Hosts with identical changes are grouped:

  web1, web2: openssl 3.0.13 → 3.0.14, restarts nginx.service; size +12.0 KiB

--json prints {"hosts": [...], "groups": [...]} instead.

Exit codes:
  0    every host checked (with or without changes)
  1    error before any host was touched (flake, nix, local tools)
  2    usage error (bad flag, unknown host, bad name)
  3    some hosts could not be checked
  130  interrupted`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiff(cmd.Context(), g, o, args)
		},
	}
	f := c.Flags()
	f.StringVar(&o.targetUser, "target-user", "", "log in as `USER` on every host (default: deployment.targetUser, else root); a user other than root uses sudo -n")
	addTargetHostFlag(f, &o.targetHost)
	f.IntVarP(&o.parallel, "parallel", "p", 10, "check at most `N` hosts at once")
	f.BoolVar(&o.json, "json", false, "print the plan as JSON on stdout")
	return withOn(c)
}

func runDiff(ctx context.Context, g *globals, o diffOptions, hosts []string) error {
	if err := checkHostFlags(o.parallel, o.targetUser); err != nil {
		return err
	}
	if err := checkTargetHost(o.targetHost); err != nil {
		return err
	}
	rc, err := g.reach(hosts)
	if err != nil {
		return err
	}
	defer rc.close()
	run := g.runner()
	out := g.output(false) // progress on stderr, whatever stdout carries
	fo := g.hostOptions(rc, run, hosts, o.targetUser, o.targetHost, o.parallel)
	fo.Reporter = out.reporter
	s, err := fleet.PrepareSessions(ctx, fo, true)
	if err != nil {
		out.close()
		return err
	}
	plans := diff.Plan(ctx, s, o.parallel)
	s.Close()
	out.close()
	if ctx.Err() != nil {
		return exitError{ExitInterrupted}
	}
	if o.json {
		if err := diff.WriteJSON(g.stdout, plans); err != nil {
			return err
		}
	} else {
		diff.WriteText(g.stdout, plans)
	}
	code := ExitOK
	for _, p := range plans {
		if p.Err != nil {
			printError(g.stderr, p.Err)
			code = ExitHostsFailed
		}
	}
	if code != ExitOK {
		return exitError{code}
	}
	return nil
}
