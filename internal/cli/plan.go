package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/skiffdeploy/skiff/internal/diff"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/fleet"
)

// planOptions are deploy's --plan and --yes.
type planOptions struct {
	plan bool
	yes  bool
}

func addPlanFlags(f *pflag.FlagSet, o *planOptions) {
	f.BoolVar(&o.plan, "plan", false, "first show what the deploy would change on each host (as skiff diff) and ask before changing anything")
	f.BoolVarP(&o.yes, "yes", "y", false, "with --plan: show the plan and deploy without asking")
}

// pauser is a reporter that can stop drawing while skiff asks a question
// (a live view).
type pauser interface {
	Pause()
	Resume()
}

// hook builds fleet.Options.BeforeDeploy for --plan (nil without it). It
// refuses, before any host is touched, to ask on a standard input that is
// not a terminal unless --yes answers for it.
func (o planOptions) hook(g *globals, parallel int) (func(context.Context, *fleet.Session) (bool, error), error) {
	if !o.plan {
		return nil, nil
	}
	if !o.yes && !isTerminal(g.stdin) {
		return nil, fault.New("", fault.Usage,
			"add --yes to deploy after showing the plan without asking, or run \"skiff diff\" to only see it",
			"--plan asks for confirmation, but standard input is not a terminal")
	}
	return func(ctx context.Context, s *fleet.Session) (bool, error) {
		plans := diff.Plan(ctx, s, parallel)
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if p, ok := s.Reporter().(pauser); ok {
			p.Pause()
			defer p.Resume()
		}
		// The plan goes to stderr with the question: stdout stays the
		// deploy's result (the table or JSON Lines).
		fmt.Fprintln(g.stderr, "skiff: plan:")
		diff.WriteText(g.stderr, plans)
		changing := 0
		for _, p := range plans {
			if p.Status == diff.Changes {
				changing++
			}
		}
		if changing == 0 {
			fmt.Fprintln(g.stderr, "skiff: plan: no host has anything to change")
			return true, nil
		}
		if o.yes {
			return true, nil
		}
		fmt.Fprintf(g.stderr, "skiff: deploy to the %d host(s) with changes? [y/N] ", changing)
		yes, err := readYes(ctx, g)
		if err != nil {
			return false, err
		}
		if !yes {
			return false, errors.New("deploy cancelled: nothing was changed")
		}
		return true, nil
	}, nil
}

func isTerminal(r any) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// readYes reads one answer line: "y" or "yes" (any case) is yes, anything
// else, end of input included, is no.
func readYes(ctx context.Context, g *globals) (bool, error) {
	answer := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(g.stdin).ReadString('\n')
		answer <- line
	}()
	select {
	case <-ctx.Done():
		fmt.Fprintln(g.stderr)
		return false, ctx.Err()
	case line := <-answer:
		a := strings.ToLower(strings.TrimSpace(line))
		if !strings.HasSuffix(line, "\n") {
			fmt.Fprintln(g.stderr)
		}
		return a == "y" || a == "yes", nil
	}
}
