package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/nix"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// Exit codes, documented in --help and the README.
const (
	ExitOK          = 0   // everything worked
	ExitError       = 1   // an error before or outside any host (evaluation, local tools)
	ExitUsage       = 2   // bad flags or arguments
	ExitHostsFailed = 3   // one or more hosts failed
	ExitRolledBack  = 4   // a host was rolled back to its previous system
	ExitInterrupted = 130 // interrupted (Ctrl-C)
)

const exitCodeHelp = `Exit codes:
  0    all hosts ok
  1    error before any host was touched (flake, nix, local tools)
  2    usage error (bad flag, unknown host, bad name)
  3    some hosts failed
  4    a host was rolled back to its previous system
  130  interrupted`

// globals are the options every command shares.
type globals struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	trace          bool
	flake          string
	sshConfig      string
	sshOptions     []string
	nixOptions     []string
	history        string // --history: the history database
}

func (g *globals) runner() *command.Runner {
	r := &command.Runner{}
	if g.trace {
		r.Trace = g.stderr
	}
	return r
}

func (g *globals) nix(r *command.Runner) *nix.Nix {
	return &nix.Nix{Run: r, Options: g.nixOptions}
}

func (g *globals) sshOptionsFor(controlDir string) (transport.Options, error) {
	o := transport.Options{ConfigFile: g.sshConfig, Extra: g.sshOptions, ControlDir: controlDir}
	if err := o.Validate(); err != nil {
		return o, usageError{err}
	}
	for _, kv := range g.nixOptions {
		if !strings.Contains(kv, "=") {
			return o, usageError{fmt.Errorf("--nix-option %q must be NAME=VALUE", kv)}
		}
	}
	return o, nil
}

// usageError marks bad command-line input (exit 2).
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// exitError carries an exit code decided by a command (3, 4) after it has
// printed its own report.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// newRoot builds the command tree.
func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "skiff",
		Short: "Deploy the NixOS hosts of a flake over SSH",
		Long: `skiff deploys the NixOS hosts of a Nix flake over SSH: it evaluates once,
builds locally, copies only the store paths a host lacks, and activates.

` + exitCodeHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetIn(g.stdin)
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.Version = readVersion().String()
	root.SetVersionTemplate("{{.Version}}\n")
	root.Flags().Bool("version", false, "print skiff's version and exit (as \"skiff version\")")
	f := root.PersistentFlags()
	f.BoolVarP(&g.trace, "trace", "x", false, "print every external command (local and remote) before running it")
	f.StringVar(&g.flake, "flake", ".", "the flake `PATH` (or flake reference) holding nixosConfigurations; PATH#HOST also selects HOST, as nixos-rebuild takes it")
	f.StringVarP(&g.sshConfig, "ssh-config", "F", "", "an ssh client configuration `FILE` used instead of ~/.ssh/config (for ssh and nix copy alike)")
	f.StringArrayVarP(&g.sshOptions, "ssh-option", "o", nil, "an extra ssh option `KEY=VALUE` (repeatable; for ssh and nix copy alike)")
	f.StringArrayVar(&g.nixOptions, "nix-option", nil, "a nix setting `NAME=VALUE` for local nix commands (repeatable)")
	f.StringVar(&g.history, "history", "", "the history database `PATH` (default $SKIFF_HISTORY, else $XDG_STATE_HOME/skiff/history.db)")
	root.AddCommand(newDeploy(g))
	root.AddCommand(newBuild(g))
	root.AddCommand(newExec(g))
	root.AddCommand(newVersion(g))
	root.AddCommand(newHistory(g))
	root.AddCommand(newStatus(g))
	root.AddCommand(newDoctor(g))
	root.AddCommand(newGC(g))
	root.AddCommand(newGenerations(g))
	root.AddCommand(newDiff(g))
	root.AddCommand(newRollback(g))
	root.AddCommand(newUploadKeys(g))
	root.AddCommand(newCompletion(g), newMan(g))
	completeHosts(root, g)
	return root
}

// Main runs skiff with args and returns the exit code. Hosts report from
// goroutines of their own, alongside the trace: each line goes to stdout
// or stderr in one Write, and a writer that is not a file (which takes
// each Write whole) gets them one at a time (serialized).
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	stdout, stderr = serialized(stdout), serialized(stderr)
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return report(ctx, stderr, err)
}

// serialized is w, or w behind a lock when it is not a file.
func serialized(w io.Writer) io.Writer {
	if _, ok := w.(*os.File); ok || w == nil {
		return w
	}
	return &lockedWriter{w: w}
}

// lockedWriter passes each Write on whole, one at a time (also how the
// hosts' line writers of skiff exec share one output).
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// report prints err as "skiff: error:" and "skiff: hint:" lines and maps it
// to an exit code.
func report(ctx context.Context, stderr io.Writer, err error) int {
	if err == nil {
		return ExitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ctx.Err() != nil {
			return ExitInterrupted
		}
		return ee.code
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "skiff: error: interrupted")
		return ExitInterrupted
	}
	printError(stderr, err)
	var ue usageError
	if errors.As(err, &ue) || fault.ClassOf(err) == fault.Usage || isCobraUsage(err) {
		if fault.ClassOf(err) == "" {
			fmt.Fprintln(stderr, "skiff: hint: run \"skiff --help\" for usage")
		}
		return ExitUsage
	}
	return ExitError
}

func isCobraUsage(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "unknown command") || strings.HasPrefix(s, "unknown flag") ||
		strings.Contains(s, "accepts ") || strings.Contains(s, "requires at least")
}

// printError prints one failure.
func printError(w io.Writer, err error) {
	msg := err.Error()
	fmt.Fprintf(w, "skiff: error: %s\n", msg)
	if fe, ok := fault.As(err); ok && fe.Hint != "" {
		fmt.Fprintf(w, "skiff: hint: %s\n", fe.Hint)
	}
}
