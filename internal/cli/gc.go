package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/fleet"
	"github.com/skiffdeploy/skiff/internal/human"
	"github.com/skiffdeploy/skiff/internal/remote"
	"github.com/skiffdeploy/skiff/internal/transport"
)

type gcOptions struct {
	targetUser string
	parallel   int
	keep       int
	olderThan  string
	dryRun     bool
	json       bool
}

func newGC(g *globals) *cobra.Command {
	var o gcOptions
	c := &cobra.Command{
		Use:   "gc [HOST...] --keep N",
		Short: "Delete old system generations and collect garbage on hosts",
		Long: `Gc deletes the old generations of each host's system profile, keeping the
newest N (--keep), the boot default and any generation holding the running or
booted system, then runs nix-store --gc and reports the bytes freed. It holds
each host's deploy lock meanwhile: a host a deploy holds is skipped (it says
who holds it; exit code 3), and a deploy waits for a gc to finish. A system
being deployed is never collected: deploys root it on the host. With
--older-than, only generations older than that go. --dry-run lists what
would be deleted and changes nothing.

Durations: Go durations (36h, 90m) or days and weeks (30d, 2w).

` + exitCodeHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("keep") {
				return usageError{errorf("--keep N is required: the number of newest generations to keep")}
			}
			return runGC(cmd.Context(), g, o, args)
		},
	}
	f := c.Flags()
	f.StringVar(&o.targetUser, "target-user", "", "log in as `USER` on every host (default: deployment.targetUser, else root); a user other than root uses sudo -n")
	f.IntVarP(&o.parallel, "parallel", "p", 10, "work on at most `N` hosts at once")
	f.IntVar(&o.keep, "keep", 0, "keep the newest `N` generations (besides the running, booted and boot default ones)")
	f.StringVar(&o.olderThan, "older-than", "", "delete only generations older than `DURATION` (e.g. 30d)")
	f.BoolVar(&o.dryRun, "dry-run", false, "list what would be deleted; change nothing")
	f.BoolVar(&o.json, "json", false, "print the result as JSON")
	return withOn(c)
}

// parseAge reads a duration, accepting days (d) and weeks (w) too.
func parseAge(s string) (time.Duration, error) {
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseFloat(n, 64)
			if err != nil || v < 0 {
				return 0, fmt.Errorf("invalid duration %q", s)
			}
			return time.Duration(v * float64(unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid duration %q: use 30d, 2w or 36h", s)
	}
	return d, nil
}

// gcResult is one host's outcome (the JSON form is stable).
type gcResult struct {
	Host       string              `json:"host"`
	DryRun     bool                `json:"dryRun"`
	Deleted    []remote.Generation `json:"deleted"`
	Kept       []remote.Generation `json:"kept"`
	FreedBytes int64               `json:"freedBytes"`
	FreedPaths int                 `json:"freedPaths"`
	FreeBytes  int64               `json:"freeBytes"` // free on the store's filesystem afterwards; -1 unknown
	// LockedBy, when set, is who holds the host's deploy lock: the host
	// was skipped.
	LockedBy string `json:"lockedBy,omitempty"`
	Error    string `json:"error,omitempty"`
	err      error
}

// hostConns evaluates the selection and makes one shared-connection
// remote.Host per host; close ends the connections.
func hostConns(ctx context.Context, g *globals, user string, selectors []string) (hosts []*remote.Host, closeAll func(), err error) {
	_, hosts, closeAll, err = evaluatedConns(ctx, g, user, selectors, nil)
	return hosts, closeAll, err
}

// evaluatedConns is hostConns with the evaluated hosts, in the same order.
// ready, when not nil, runs once the arguments are found good and before
// the flake is evaluated (upload-keys asks for the sudo password there).
func evaluatedConns(ctx context.Context, g *globals, user string, selectors []string, ready func() error) (evaluated []flake.Host, hosts []*remote.Host, closeAll func(), err error) {
	rc, err := g.reach(selectors)
	if err != nil {
		return nil, nil, nil, err
	}
	if ready != nil {
		if err := ready(); err != nil {
			rc.close()
			return nil, nil, nil, err
		}
	}
	run := g.runner()
	evaluated, targets, err := hostTargets(ctx, g, run, rc, user, selectors)
	if err != nil {
		rc.close()
		return nil, nil, nil, err
	}
	for i, h := range evaluated {
		hosts = append(hosts, &remote.Host{Name: h.Name, Conn: &transport.SSH{Target: targets[i], Options: rc.ssh, Run: run, Name: h.Name}})
	}
	closeAll = func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, h := range hosts {
			h.Conn.Close(cctx)
		}
		rc.close()
	}
	return evaluated, hosts, closeAll, nil
}

// writeHosts prints the per-host results of a command as its --json
// output: {"hosts": [...]}, indented.
func writeHosts(w io.Writer, hosts any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Hosts any `json:"hosts"`
	}{hosts})
}

// hostsFailed prints the error of each host that failed (errOf not nil)
// and returns exit 3 when one did.
func hostsFailed[T any](g *globals, results []T, errOf func(T) error) error {
	failed := false
	for _, r := range results {
		if err := errOf(r); err != nil {
			failed = true
			printError(g.stderr, err)
		}
	}
	if failed {
		return exitError{ExitHostsFailed}
	}
	return nil
}

// eachHost runs fn for every host, at most parallel at once.
func eachHost(hosts []*remote.Host, parallel int, fn func(i int, h *remote.Host)) {
	var g errgroup.Group
	g.SetLimit(max(parallel, 1))
	for i, h := range hosts {
		g.Go(func() error {
			fn(i, h)
			return nil
		})
	}
	_ = g.Wait()
}

func runGC(ctx context.Context, g *globals, o gcOptions, selectors []string) error {
	if o.keep < 0 {
		return usageError{errorf("--keep must be 0 or more")}
	}
	if err := checkHostFlags(o.parallel, o.targetUser); err != nil {
		return err
	}
	policy := remote.GCPolicy{Keep: o.keep}
	if o.olderThan != "" {
		d, err := parseAge(o.olderThan)
		if err != nil {
			return usageError{err}
		}
		policy.OlderThan = d
	}
	hosts, closeAll, err := hostConns(ctx, g, o.targetUser, selectors)
	if err != nil {
		return err
	}
	defer closeAll()
	now := time.Now()
	results := make([]gcResult, len(hosts))
	eachHost(hosts, o.parallel, func(i int, h *remote.Host) {
		r := gcResult{Host: h.Name, DryRun: o.dryRun, FreeBytes: -1}
		defer func() { results[i] = r }()
		if o.dryRun {
			list, err := h.ListGenerations(ctx)
			if err != nil {
				r.err = err
				return
			}
			r.Deleted = policy.Doomed(list, now)
			gone := map[int]bool{}
			for _, x := range r.Deleted {
				gone[x.Number] = true
			}
			for _, x := range list.List {
				if !gone[x.Number] {
					r.Kept = append(r.Kept, x)
				}
			}
			return
		}
		// One session for the lock, the pruning and the collection.
		sess, err := h.OpenSession(ctx)
		if err != nil {
			r.err = err
			return
		}
		defer sess.Close()
		lock, err := h.Lock(ctx, fleet.LockOwner(remote.OpGC), false)
		if err != nil {
			var held *remote.HeldError
			if errors.As(err, &held) {
				r.LockedBy = held.Holder.String()
				who := "a deploy"
				if held.Holder.Op != "" {
					who = "skiff " + held.Holder.Op
				}
				err = fault.Wrap(err, h.Name, remote.Locked, "run skiff gc again once it has finished",
					"skipped: %s holds the host's deploy lock: %s", who, held.Holder)
			}
			r.err = err
			return
		}
		defer lock.Release()
		if lock.Took == "stale" {
			fmt.Fprintf(g.stderr, "%s: gc: took over a stale deploy lock of %s\n", h.Name, lock.Previous)
		}
		r.Deleted, r.Kept, r.err = h.PruneGenerations(ctx, policy, now)
		if r.err != nil {
			return
		}
		fmt.Fprintf(g.stderr, "%s: gc: deleted %d generation(s), collecting garbage\n", h.Name, len(r.Deleted))
		freed, err := h.CollectGarbage(ctx)
		if err != nil {
			r.err = err
			return
		}
		r.FreedBytes, r.FreedPaths, r.FreeBytes = freed.Bytes, freed.Paths, freed.Free
	})
	for i := range results {
		if results[i].err != nil {
			results[i].Error = results[i].err.Error()
		}
		if results[i].Deleted == nil {
			results[i].Deleted = []remote.Generation{}
		}
		if results[i].Kept == nil {
			results[i].Kept = []remote.Generation{}
		}
	}
	if o.json {
		if err := writeHosts(g.stdout, results); err != nil {
			return err
		}
	} else {
		printGC(g.stdout, results, o.dryRun)
	}
	return hostsFailed(g, results, func(r gcResult) error { return r.err })
}

func genNumbers(l []remote.Generation) string {
	if len(l) == 0 {
		return "-"
	}
	var s []string
	for _, x := range l {
		s = append(s, strconv.Itoa(x.Number))
	}
	return strings.Join(s, ",")
}

func printGC(w io.Writer, results []gcResult, dryRun bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if dryRun {
		fmt.Fprintln(tw, "HOST\tWOULD DELETE\tKEEPS\tERROR")
		for _, r := range results {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Host, genNumbers(r.Deleted), genNumbers(r.Kept), emptyDash(r.Error))
		}
		tw.Flush()
		return
	}
	fmt.Fprintln(tw, "HOST\tDELETED\tKEPT\tFREED\tFREE NOW\tERROR")
	for _, r := range results {
		freed, free := "-", "-"
		if r.err == nil {
			freed = fmt.Sprintf("%s (%d paths)", human.Bytes(r.FreedBytes), r.FreedPaths)
			if r.FreeBytes >= 0 {
				free = human.Bytes(r.FreeBytes)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Host, genNumbers(r.Deleted), genNumbers(r.Kept), freed, free, emptyDash(r.Error))
	}
	tw.Flush()
}

func emptyDash(s string) string {
	if s == "" {
		return "-"
	}
	return flatLine(s)
}
