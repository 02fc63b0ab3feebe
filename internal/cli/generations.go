package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skiffdeploy/skiff/internal/remote"
)

type generationsOptions struct {
	targetUser string
	parallel   int
	json       bool
}

func newGenerations(g *globals) *cobra.Command {
	var o generationsOptions
	c := &cobra.Command{
		Use:   "generations [HOST...]",
		Short: "List the system generations of hosts",
		Long: `Generations lists each host's system generations: number, date, which one
runs now (current), which one the host booted, which one boots by default,
the system path and its NixOS version. Deploys in mode test and
dry-activate add no generation. Nothing on the hosts is changed; no sudo is
needed.

` + exitCodeHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGenerations(cmd.Context(), g, o, args)
		},
	}
	f := c.Flags()
	f.StringVar(&o.targetUser, "target-user", "", "log in as `USER` on every host (default: deployment.targetUser, else root)")
	f.IntVarP(&o.parallel, "parallel", "p", 10, "query at most `N` hosts at once")
	f.BoolVar(&o.json, "json", false, "print the generations as JSON")
	return withOn(c)
}

// hostGenerations is one host's generations (the JSON form is stable).
type hostGenerations struct {
	Host        string              `json:"host"`
	Current     string              `json:"current"`
	Booted      string              `json:"booted"`
	Generations []remote.Generation `json:"generations"`
	Error       string              `json:"error,omitempty"`
	err         error
}

func runGenerations(ctx context.Context, g *globals, o generationsOptions, selectors []string) error {
	if err := checkHostFlags(o.parallel, o.targetUser); err != nil {
		return err
	}
	hosts, closeAll, err := hostConns(ctx, g, o.targetUser, selectors)
	if err != nil {
		return err
	}
	defer closeAll()
	results := make([]hostGenerations, len(hosts))
	eachHost(hosts, o.parallel, func(i int, h *remote.Host) {
		r := hostGenerations{Host: h.Name, Generations: []remote.Generation{}}
		gens, err := h.ListGenerations(ctx)
		if err != nil {
			r.err, r.Error = err, err.Error()
		} else {
			r.Current, r.Booted = gens.Current, gens.Booted
			if gens.List != nil {
				r.Generations = gens.List
			}
		}
		results[i] = r
	})
	if o.json {
		if err := writeHosts(g.stdout, results); err != nil {
			return err
		}
	} else {
		printGenerations(g.stdout, results)
	}
	return hostsFailed(g, results, func(r hostGenerations) error { return r.err })
}

func printGenerations(w io.Writer, results []hostGenerations) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tGENERATION\tDATE\tSTATE\tNIXOS\tPATH")
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(tw, "%s\t-\t-\terror\t-\t-\n", r.Host)
			continue
		}
		if len(r.Generations) == 0 {
			state := "no generations"
			if r.Current != "" {
				state += "; running " + r.Current
			}
			fmt.Fprintf(tw, "%s\t-\t-\t%s\t-\t-\n", r.Host, state)
		}
		for _, x := range r.Generations {
			var st []string
			if x.Current {
				st = append(st, "current")
			}
			if x.Booted {
				st = append(st, "booted")
			}
			if x.BootDefault {
				st = append(st, "boot-default")
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", r.Host, x.Number, x.Date.Local().Format("2006-01-02 15:04:05"),
				emptyDash(strings.Join(st, ",")), emptyDash(x.NixOSVersion), x.Path)
		}
		if r.Current != "" && !anyCurrent(r.Generations) {
			fmt.Fprintf(tw, "%s\t-\t-\tcurrent\t-\t%s\n", r.Host, r.Current)
		}
	}
	tw.Flush()
}

// anyCurrent reports whether a generation holds the running system (after
// a test deploy, none does).
func anyCurrent(l []remote.Generation) bool {
	for _, x := range l {
		if x.Current {
			return true
		}
	}
	return false
}
