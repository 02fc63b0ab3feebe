package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/fleet"
)

type buildOptions struct {
	outLink string
	json    bool
}

func newBuild(g *globals) *cobra.Command {
	var o buildOptions
	c := &cobra.Command{
		Use:   "build [HOST|GLOB|@TAG...]",
		Short: "Build the hosts' systems here, touching no host",
		Long: `Build evaluates the selected hosts with one nix eval and builds their
systems with one nix build on this machine, exactly as deploy does, and
connects to no host (no ssh at all; deployment.buildHost and buildOnTarget are not used). A
host whose platform this machine cannot build is refused, as in deploy.
Hosts are chosen by name, glob and @tag, as arguments or with --on;
without any, every host of the flake is built.

It prints "HOST PATH" for each host built, PATH being its system's store
path; --json prints one object per host instead:
{"host", "path", "platform", "closure_size"} (bytes), with "error"
({"class", "message", "hint"}) for a host that failed. --out-link DIR
makes DIR/HOST a garbage collector root for each host's system, as
nix build --out-link does. A host that fails to build does not stop the
others.

Exit codes:
  0    every host's system was built
  1    error before anything was built (flake, nix)
  2    usage error (bad flag, unknown host, bad name)
  3    some host's system failed to build
  130  interrupted`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBuild(cmd.Context(), g, o, args)
		},
	}
	f := c.Flags()
	f.StringVar(&o.outLink, "out-link", "", "make `DIR`/HOST a garbage collector root for each host's system")
	f.BoolVar(&o.json, "json", false, "print JSON Lines on stdout, one object per host")
	return withOn(c)
}

// builtJSON is one line of "skiff build --json". Fields are only ever
// added, never repurposed.
type builtJSON struct {
	Host        string     `json:"host"`
	Path        string     `json:"path,omitempty"`
	Platform    string     `json:"platform"`
	ClosureSize int64      `json:"closure_size,omitempty"`
	OutLink     string     `json:"out_link,omitempty"`
	Error       *errorJSON `json:"error,omitempty"`
}

// errorJSON is a host's classified error in the JSON of build and exec.
type errorJSON struct {
	Class   string `json:"class"`
	Message string `json:"message"`
	Hint    string `json:"hint"`
}

func toErrorJSON(err error) *errorJSON {
	if err == nil {
		return nil
	}
	j := &errorJSON{Class: string(classOf(err)), Message: err.Error()}
	if fe, ok := fault.As(err); ok {
		j.Message, j.Hint = fe.Msg, fe.Hint
	}
	return j
}

func runBuild(ctx context.Context, g *globals, o buildOptions, selectors []string) error {
	rc, err := g.reach(selectors)
	if err != nil {
		return err
	}
	rc.close() // build opens no ssh connection
	outDir := ""
	if o.outLink != "" {
		if outDir, err = filepath.Abs(o.outLink); err != nil {
			return usageError{errorf("invalid --out-link %q: %v", o.outLink, err)}
		}
	}
	run := g.runner()
	n := g.nix(run)
	out := g.output(false) // progress on stderr, whatever stdout carries
	built, err := fleet.Build(ctx, fleet.Options{
		Flake:    rc.ref,
		Hosts:    selectors,
		Runner:   run,
		Nix:      n,
		Reporter: out.reporter,
	})
	out.close()
	if err != nil {
		return err
	}
	links := make([]string, len(built))
	if outDir != "" {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return fmt.Errorf("create the --out-link directory: %w", err)
		}
		for i, b := range built {
			if b.Err != nil {
				continue
			}
			link := filepath.Join(outDir, b.Host.Name)
			if err := n.AddRoot(ctx, link, b.Path); err != nil {
				built[i].Err = fmt.Errorf("%s: make the garbage collector root %s: %w", b.Host.Name, link, err)
				continue
			}
			links[i] = link
		}
	}
	if ctx.Err() != nil {
		return exitError{ExitInterrupted}
	}
	if o.json {
		if err := writeBuildJSON(g.stdout, built, links); err != nil {
			return err
		}
	} else {
		for _, b := range built {
			if b.Err == nil {
				fmt.Fprintf(g.stdout, "%s %s\n", b.Host.Name, b.Path)
			}
		}
	}
	code := ExitOK
	for _, b := range built {
		if b.Err != nil {
			printError(g.stderr, b.Err)
			code = ExitHostsFailed
		}
	}
	if code != ExitOK {
		return exitError{code}
	}
	return nil
}

func writeBuildJSON(w io.Writer, built []fleet.Built, links []string) error {
	enc := json.NewEncoder(w)
	for i, b := range built {
		j := builtJSON{Host: b.Host.Name, Platform: b.Host.System, OutLink: links[i], Error: toErrorJSON(b.Err)}
		if j.Platform == "" {
			j.Platform = b.Host.BuildSystem
		}
		if b.Err == nil {
			j.Path, j.ClosureSize = b.Path, b.ClosureSize
		}
		if err := enc.Encode(j); err != nil {
			return err
		}
	}
	return nil
}
