package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/lines"
	"github.com/skiffdeploy/skiff/internal/remote"
)

type execOptions struct {
	targetUser string
	parallel   int
	sudo       bool
	json       bool
}

func newExec(g *globals) *cobra.Command {
	var o execOptions
	c := &cobra.Command{
		Use:   "exec [HOST|GLOB|@TAG...] -- COMMAND [ARG...]",
		Short: "Run a command on hosts in parallel",
		Long: `Exec runs COMMAND with its arguments on each selected host, in parallel (at
most --parallel at once), as the login user, or as root through sudo -n
with --sudo (a login user whose sudo wants a password is refused: exec never
asks for one). Hosts are chosen by name, glob and @tag, as arguments or with
--on; without any, every host of the flake. The flake is evaluated for the
hosts' addresses; nothing is built.

The arguments after "--" reach the host exactly as given: each is quoted
once for the host's shell, so spaces, quotes, $, ; and * arrive verbatim.
For a pipeline or redirection, run a shell: skiff exec web1 -- sh -c 'df | tail -1'.

As the hosts print, each line of a host's standard output goes to stdout
and each line of its standard error to stderr, prefixed with "HOST| ".
Then a table (HOST, EXIT, ERROR) goes to stderr, followed by an error and a
hint for each host the command could not run on. --json prints instead,
when every host is done, one object per host on stdout:
{"host", "exit_code", "stdout", "stderr", "error"}, exit_code being null
and error {"class", "message", "hint"} when the command could not run.
A command's own exit code is reported as it is, 255 included: the command
runs under a small sh wrapper that writes its exit code last on standard
error (taken out before the output is shown), so it is never mistaken for
ssh's own 255.

Exit codes:
  0    the command exited 0 on every host
  1    error before any host was touched (flake, nix)
  2    usage error (bad flag, unknown host, no "--" or no command)
  3    the command failed (non-zero exit) on some host, or could not run there
  130  interrupted`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			hosts, argv, ok := splitDash(cmd, args)
			if !ok {
				return usageError{errorf("exec needs \"--\" before the command: skiff exec [HOST...] -- COMMAND [ARG...]")}
			}
			if len(argv) == 0 {
				return usageError{errorf("exec needs a command after \"--\"")}
			}
			return runExec(cmd.Context(), g, o, hosts, argv)
		},
	}
	f := c.Flags()
	f.StringVar(&o.targetUser, "target-user", "", "log in as `USER` on every host (default: deployment.targetUser, else root)")
	f.IntVarP(&o.parallel, "parallel", "p", 10, "run on at most `N` hosts at once")
	f.BoolVar(&o.sudo, "sudo", false, "run the command as root through sudo -n when the login user is not root")
	f.BoolVar(&o.json, "json", false, "print JSON Lines on stdout, one object per host, when every host is done")
	return withOn(c)
}

// execResult is how the command ended on one host.
type execResult struct {
	host string
	res  remote.CommandResult
	err  error // the command could not run
}

func (r execResult) failed() bool { return r.err != nil || r.res.ExitCode != 0 }

// execJSON is one line of "skiff exec --json". Fields are only ever added,
// never repurposed.
type execJSON struct {
	Host     string     `json:"host"`
	ExitCode *int       `json:"exit_code"` // null when the command did not run
	Stdout   string     `json:"stdout"`
	Stderr   string     `json:"stderr"`
	Error    *errorJSON `json:"error"`
}

func runExec(ctx context.Context, g *globals, o execOptions, selectors, argv []string) error {
	if err := checkHostFlags(o.parallel, o.targetUser); err != nil {
		return err
	}
	hosts, closeAll, err := hostConns(ctx, g, o.targetUser, selectors)
	if err != nil {
		return err
	}
	defer closeAll()
	fmt.Fprintf(g.stderr, "skiff: exec: running %s on %d host(s)\n", command.Join(argv), len(hosts))
	stdout, stderr := &lockedWriter{w: g.stdout}, &lockedWriter{w: g.stderr}
	results := make([]execResult, len(hosts))
	eachHost(hosts, o.parallel, func(i int, h *remote.Host) {
		c := remote.UserCommand{Argv: argv, Sudo: o.sudo}
		var outLines, errLines *lines.Writer
		if !o.json {
			outLines = prefixWriter(h.Name+"| ", stdout)
			errLines = prefixWriter(h.Name+"| ", stderr)
			c.Stdout, c.Stderr = outLines, errLines
		}
		res, err := h.RunCommand(ctx, c)
		if outLines != nil {
			outLines.Flush()
			errLines.Flush()
		}
		results[i] = execResult{host: h.Name, res: res, err: err}
	})
	if ctx.Err() != nil {
		return exitError{ExitInterrupted}
	}
	if o.json {
		enc := json.NewEncoder(g.stdout)
		for _, r := range results {
			j := execJSON{Host: r.host, Stdout: string(r.res.Stdout), Stderr: string(r.res.Stderr), Error: toErrorJSON(r.err)}
			if r.err == nil && r.res.Ran {
				code := r.res.ExitCode
				j.ExitCode = &code
			}
			if err := enc.Encode(j); err != nil {
				return err
			}
		}
	} else {
		execTable(g.stderr, results)
	}
	code := ExitOK
	for _, r := range results {
		if r.err != nil {
			printError(g.stderr, r.err)
		}
		if r.failed() {
			code = ExitHostsFailed
		}
	}
	if code != ExitOK {
		return exitError{code}
	}
	return nil
}

// execTable prints each host's exit code, or why the command did not run.
func execTable(w io.Writer, results []execResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tEXIT\tERROR")
	for _, r := range results {
		exit, msg := "-", "-"
		if r.err != nil {
			msg = string(classOf(r.err)) + ": " + flatLine(errorMessage(r.err))
		} else {
			exit = strconv.Itoa(r.res.ExitCode)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.host, exit, msg)
	}
	tw.Flush()
}

// errorMessage is err's message without the host name in front.
func errorMessage(err error) string {
	if j := toErrorJSON(err); j != nil {
		return j.Message
	}
	return ""
}

// prefixWriter writes whole lines, each with prefix in front, so that the
// lines of hosts running at once never mix; Flush writes a last line that
// lacks its newline (with one).
func prefixWriter(prefix string, w io.Writer) *lines.Writer {
	return lines.New(func(l []byte) {
		out := make([]byte, 0, len(prefix)+len(l)+1)
		out = append(out, prefix...)
		out = append(out, lines.Trim(l)...)
		w.Write(append(out, '\n'))
	})
}
