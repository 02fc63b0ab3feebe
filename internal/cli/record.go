package cli

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/fleet"
	"github.com/skiffdeploy/skiff/internal/history"
)

// recordTimeout bounds recording a run (reading the flake's revision and
// writing the database), which happens even after an interrupt.
const recordTimeout = 15 * time.Second

// recordRun writes a finished run to the history. A failure to record
// never fails the command: it is printed as a "skiff: warning:" line and
// returned for callers that want to know (tests); callers may ignore it.
// rev is the flake's revision read as the run started (startRevision);
// nil reads it now.
func recordRun(g *globals, start time.Time, cmd string, ref flake.Ref, rev *pendingRevision, mode string, results []fleet.Result, code int) error {
	// The run's own context may be cancelled (Ctrl-C): record anyway.
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	err := record(ctx, g, start, cmd, ref, rev, mode, results, code)
	if err != nil {
		fmt.Fprintf(g.stderr, "skiff: warning: the run was not recorded in the history: %v\n", err)
	}
	return err
}

func record(ctx context.Context, g *globals, start time.Time, cmd string, ref flake.Ref, rev *pendingRevision, mode string, results []fleet.Result, code int) error {
	path, err := g.historyPath()
	if err != nil {
		return err
	}
	run := historyRun(start, time.Now(), cmd, ref, mode, results, code)
	run.Who = whoAmI()
	if rev == nil {
		rev = startRevision(g, ref)
	}
	run.Revision, run.Dirty = rev.wait(ctx)
	db, err := history.Open(ctx, path)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.Record(ctx, run)
	return err
}

// historyRun maps a run's results to a history record (without who and
// the revision).
func historyRun(start, end time.Time, cmd string, ref flake.Ref, mode string, results []fleet.Result, code int) history.Run {
	run := history.Run{Started: start, Finished: end, Command: cmd, Flake: ref.URL, Mode: mode, ExitCode: code}
	for _, r := range results {
		h := history.Host{Name: r.Host, Result: string(r.Status), OldPath: r.OldPath, NewPath: r.NewPath,
			OldGen: r.OldGen, NewGen: r.NewGen, Duration: r.Duration, Note: r.Note}
		if len(r.Phases) > 0 {
			h.Phases = map[string]time.Duration{}
			for p, d := range r.Phases {
				h.Phases[string(p)] = d
			}
		}
		if r.Err != nil {
			h.ErrorClass = string(r.Class())
			h.Error = r.Err.Error()
			if fe, ok := fault.As(r.Err); ok {
				h.Error = fe.Msg
			}
		}
		run.Hosts = append(run.Hosts, h)
	}
	return run
}

// whoAmI is user@machine.
func whoAmI() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		name = "unknown"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return name + "@" + host
}

// pendingRevision is a flake's revision being read in the background.
type pendingRevision struct {
	done  chan struct{}
	rev   string
	dirty bool
}

// startRevision reads the revision of ref's local git flake (flakeRevision)
// in the background: started with the run, it records the tree that was
// deployed, not the one found at the end, and the run's end does not wait
// for git. A flake that is not a local directory has none.
func startRevision(g *globals, ref flake.Ref) *pendingRevision {
	p := &pendingRevision{done: make(chan struct{})}
	if ref.Dir == "" {
		close(p.done)
		return p
	}
	run := g.runner()
	go func() {
		defer close(p.done)
		ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
		defer cancel()
		p.rev, p.dirty = flakeRevision(ctx, run, ref.Dir)
	}()
	return p
}

// wait is the revision, once read ("" when ctx ends first).
func (p *pendingRevision) wait(ctx context.Context) (string, bool) {
	select {
	case <-p.done:
		return p.rev, p.dirty
	case <-ctx.Done():
		return "", false
	}
}

// flakeRevision reads the commit of a local git flake and whether its
// work tree has uncommitted changes to tracked files (untracked files are
// not part of a git flake, as Nix sees it). A flake that is not in a git
// repository (or one without commits) has no revision.
func flakeRevision(ctx context.Context, run *command.Runner, dir string) (rev string, dirty bool) {
	res, err := run.Run(ctx, command.Cmd{Argv: []string{"git", "-C", dir, "rev-parse", "--verify", "HEAD"}})
	if err != nil {
		return "", false
	}
	rev = strings.TrimSpace(string(res.Stdout))
	res, err = run.Run(ctx, command.Cmd{Argv: []string{"git", "-C", dir, "status", "--porcelain", "--untracked-files=no"}})
	if err != nil {
		return rev, false
	}
	return rev, strings.TrimSpace(string(res.Stdout)) != ""
}
