package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/doctor"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/fleet"
	"github.com/skiffdeploy/skiff/internal/transport"
)

type doctorOptions struct {
	targetUser string
	parallel   int
	timeout    time.Duration
	json       bool
}

func newDoctor(g *globals) *cobra.Command {
	var o doctorOptions
	c := &cobra.Command{
		Use:   "doctor [HOST...]",
		Short: "Check, layer by layer, that skiff can reach, log in to and deploy each host",
		Long: `Doctor checks each host, in order: the effective ssh configuration (ssh -G),
name resolution, TCP, the SSH banner, the host key, authentication; then on
the host sudo (for a user other than root), Nix, the store, free space on
/nix/store and /boot, failed units, activation locks and the platform; and
locally whether this machine can build the host's platform. A check whose
prerequisite failed is skipped. Hosts are checked in parallel, each within
--timeout.

It prints a table (HOST, CHECK, STATUS, DETAIL) with one "hint:" line per
failure or warning; --json prints the same as JSON. Nothing on the hosts
is changed.

Exit codes:
  0    no check failed (warnings allowed)
  1    error before any host was touched (flake, nix)
  2    usage error
  3    some check failed on some host
  130  interrupted`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDoctor(cmd.Context(), g, o, args)
		},
	}
	f := c.Flags()
	f.StringVar(&o.targetUser, "target-user", "", "log in as `USER` on every host (default: deployment.targetUser, else root)")
	f.IntVarP(&o.parallel, "parallel", "p", 10, "check at most `N` hosts at once")
	f.DurationVar(&o.timeout, "timeout", doctor.DefaultTimeout, "time allowed for each host's checks")
	f.BoolVar(&o.json, "json", false, "print the findings as JSON")
	return withOn(c)
}

// hostTargets evaluates the selected hosts (names are validated before any
// host is touched) and returns them with their ssh targets.
func hostTargets(ctx context.Context, g *globals, run *command.Runner, rc reach, user string, selectors []string) ([]flake.Host, []transport.Target, error) {
	hosts, err := flake.Evaluate(ctx, g.nix(run), rc.ref, selectors)
	if err != nil {
		return nil, nil, err
	}
	hosts, local, err := flake.OverSSH(hosts, selectors)
	if err != nil {
		return nil, nil, err
	}
	for _, h := range local {
		fmt.Fprintf(g.stderr, "skiff: %s: left out: its deployment.targetHost is null, so it is deployed only on itself\n", h.Name)
	}
	if err := fleet.UsersFromSSH(ctx, run, rc.ssh, hosts, user); err != nil {
		return nil, nil, err
	}
	targets := make([]transport.Target, len(hosts))
	for i, h := range hosts {
		targets[i] = fleet.TargetOf(h, user)
	}
	return hosts, targets, nil
}

func runDoctor(ctx context.Context, g *globals, o doctorOptions, selectors []string) error {
	if err := checkHostFlags(o.parallel, o.targetUser); err != nil {
		return err
	}
	if o.timeout < time.Second {
		return usageError{errorf("--timeout must be at least 1s")}
	}
	rc, err := g.reach(selectors)
	if err != nil {
		return err
	}
	defer rc.close()
	sshOpts := rc.ssh
	run := g.runner()
	hosts, targets, err := hostTargets(ctx, g, run, rc, o.targetUser, selectors)
	if err != nil {
		return err
	}
	var list []doctor.Target
	for i, h := range hosts {
		t := doctor.Target{Name: h.Name, Target: targets[i], System: h.System, BuildSystem: h.BuildSystem, BuiltOn: h.Deployment.BuildHost}
		if h.Deployment.BuildOnTarget && t.BuiltOn == "" {
			t.BuiltOn = "the host itself (deployment.buildOnTarget)"
		}
		list = append(list, t)
	}
	fmt.Fprintf(g.stderr, "skiff: doctor: checking %d host(s)\n", len(list))
	reports := doctor.Run(ctx, doctor.Options{SSH: sshOpts, Runner: run, Nix: g.nix(run), Timeout: o.timeout, Parallel: o.parallel,
		Flake: rc.ref.URL, User: o.targetUser}, list)
	if o.json {
		if err := writeHosts(g.stdout, reports); err != nil {
			return err
		}
	} else {
		printDoctor(g.stdout, reports)
	}
	for _, r := range reports {
		if r.Status == doctor.Fail {
			return exitError{ExitHostsFailed}
		}
	}
	return nil
}

// printDoctor prints the findings as a table, then one hint line per
// failure or warning.
func printDoctor(w io.Writer, reports []doctor.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tCHECK\tSTATUS\tDETAIL")
	var hints []string
	for _, r := range reports {
		for _, f := range r.Findings {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Host, f.Check, f.Status, flatLine(f.Detail))
			if f.Hint != "" && (f.Status == doctor.Fail || f.Status == doctor.Warn) {
				hints = append(hints, fmt.Sprintf("hint: %s %s: %s", f.Host, f.Check, f.Hint))
			}
		}
	}
	tw.Flush()
	for _, h := range hints {
		fmt.Fprintln(w, h)
	}
}

func flatLine(s string) string { return strings.Join(strings.Fields(s), " ") }
