package nix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/skiffdeploy/skiff/internal/command"
)

// Features is passed to every nix invocation: required on Nix 2.8,
// harmless on newer releases where they are stable or already enabled.
var Features = []string{"--extra-experimental-features", "nix-command flakes"}

// Nix runs the local nix command.
type Nix struct {
	Run *command.Runner
	// Options are extra "--option NAME VALUE" pairs, as NAME=VALUE.
	Options []string

	mu      sync.Mutex
	version *Version
	// pathInfoFormat is the form of nix path-info that worked
	// (ClosureArgs), once one has.
	pathInfoFormat *bool
}

// Available reports whether the nix command can be found.
func Available() error {
	if _, err := exec.LookPath("nix"); err != nil {
		return errors.New("nix is not installed or not on PATH")
	}
	return nil
}

func (n *Nix) argv(sub ...string) []string {
	argv := append([]string{"nix"}, Features...)
	for _, o := range n.Options {
		k, v, _ := strings.Cut(o, "=")
		argv = append(argv, "--option", k, v)
	}
	return append(argv, sub...)
}

// Version returns the local nix version, asking once.
func (n *Nix) Version(ctx context.Context) (Version, error) {
	n.mu.Lock()
	known := n.version
	n.mu.Unlock()
	if known != nil {
		return *known, nil
	}
	res, err := n.Run.Run(ctx, command.Cmd{Argv: []string{"nix", "--version"}})
	if err != nil {
		return Version{}, err
	}
	v, err := ParseVersion(string(res.Stdout))
	if err != nil {
		return Version{}, err
	}
	n.mu.Lock()
	n.version = &v
	n.mu.Unlock()
	return v, nil
}

// EvalJSON runs "nix eval --json INSTALLABLE --apply FN" and decodes the
// result into out.
func (n *Nix) EvalJSON(ctx context.Context, installable, apply string, out any) error {
	res, err := n.Run.Run(ctx, command.Cmd{Argv: n.argv("eval", "--json", installable, "--apply", apply)})
	if err != nil {
		return err
	}
	if err := json.Unmarshal(res.Stdout, out); err != nil {
		return fmt.Errorf("nix eval printed unexpected output: %w", err)
	}
	return nil
}

// BuildResult is one entry of "nix build --json".
type BuildResult struct {
	DrvPath string            `json:"drvPath"`
	Outputs map[string]string `json:"outputs"`
}

// Build builds the given derivations in one nix invocation and returns the
// out path of each derivation, keyed by derivation path.
func (n *Nix) Build(ctx context.Context, drvs []string) (map[string]string, error) {
	v, err := n.Version(ctx)
	if err != nil {
		return nil, err
	}
	args := []string{"build", "--json", "--no-link", "--keep-going"}
	for _, d := range drvs {
		args = append(args, BuildTarget(v, d))
	}
	res, err := n.Run.Run(ctx, command.Cmd{Argv: n.argv(args...)})
	if err != nil {
		return nil, err
	}
	return ParseBuildResults(res.Stdout)
}

// ParseBuildResults reads "nix build --json" output into the out path of
// each derivation, keyed by derivation path. A list of bare .drv paths
// means nix built the derivation files themselves, not their outputs
// (DerivedPathOutputs): an error, never an empty result.
func ParseBuildResults(data []byte) (map[string]string, error) {
	var built []BuildResult
	if err := json.Unmarshal(data, &built); err != nil {
		var paths []string
		if json.Unmarshal(data, &paths) == nil {
			return nil, fmt.Errorf("nix build built the derivation files %s, not their outputs (a nix that wants DRV^out)", strings.Join(paths, " "))
		}
		return nil, fmt.Errorf("nix build printed unexpected output: %w", err)
	}
	outs := make(map[string]string)
	for _, b := range built {
		if b.Outputs["out"] == "" {
			return nil, fmt.Errorf("nix build printed no out path for %s", b.DrvPath)
		}
		outs[b.DrvPath] = b.Outputs["out"]
	}
	return outs, nil
}

// PathInfo is one store path of a closure.
type PathInfo struct {
	Path       string   `json:"path"`
	NarSize    int64    `json:"narSize"`
	NarHash    string   `json:"narHash"`
	References []string `json:"references"`
	Deriver    string   `json:"deriver"`
}

// ParsePathInfo reads "nix path-info --json" output of any release: a list
// of objects with a "path" key, or an object keyed by path
// (PathInfoObject). The result is sorted by path.
func ParsePathInfo(data []byte) ([]PathInfo, error) {
	var list []PathInfo
	if err := json.Unmarshal(data, &list); err == nil {
		sort.Slice(list, func(i, j int) bool { return list[i].Path < list[j].Path })
		return list, nil
	}
	var byPath map[string]*PathInfo
	if err := json.Unmarshal(data, &byPath); err != nil {
		return nil, fmt.Errorf("nix path-info printed unexpected output: %w", err)
	}
	for p, info := range byPath {
		if info == nil { // newer Nix: invalid path
			continue
		}
		info.Path = p
		list = append(list, *info)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Path < list[j].Path })
	return list, nil
}

// Closure returns every store path in the closures of paths with its NAR
// size, from one "nix path-info -r --json" call (two when nix refuses the
// first form it is asked in).
//
// The form of nix path-info (PathInfoJSONFormat, ClosureArgs) is the one that worked
// before, else the one the version asks for where it is known already
// (nix --version is not run for it: one process more), else the one
// without --json-format, which every release up to now takes. When nix
// refuses the form chosen, the other one is tried, and kept.
func (n *Nix) Closure(ctx context.Context, paths ...string) ([]PathInfo, error) {
	n.mu.Lock()
	format := n.version != nil && n.version.Has(PathInfoJSONFormat)
	if n.pathInfoFormat != nil {
		format = *n.pathInfoFormat
	}
	n.mu.Unlock()
	res, format, err := AskClosure(func(sub []string) (command.Result, error) {
		return n.Run.Run(ctx, command.Cmd{Argv: n.argv(append(sub, paths...)...)})
	}, format)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.pathInfoFormat = &format
	n.mu.Unlock()
	return ParsePathInfo(res.Stdout)
}

// AskClosure asks for closure records (ParsePathInfo reads its output)
// with run, which runs nix with the subcommand it is given (ClosureArgs)
// followed by the store paths: on this machine, or on a build host. It
// asks in the form format says and, when nix refuses that form
// (RefusesJSONFormat), in the other; it returns the form that answered.
func AskClosure(run func(sub []string) (command.Result, error), format bool) (command.Result, bool, error) {
	res, err := run(ClosureArgs(format))
	if err != nil && RefusesJSONFormat(err) {
		format = !format
		res, err = run(ClosureArgs(format))
	}
	return res, format, err
}

// CopyArgs is the argv of "nix copy" sending paths to store URL.
func (n *Nix) CopyArgs(to string, paths ...string) []string {
	args := append([]string{"copy", "--to", to}, paths...)
	return n.argv(args...)
}

var builderFailedRE = regexp.MustCompile(`builder for '(/nix/store/[^']+\.drv)' failed`)

// ParseBuildFailure finds, in nix build's standard error, the derivation
// that failed and the log lines nix printed for it.
func ParseBuildFailure(stderr string) (drv, logTail string) {
	if m := builderFailedRE.FindStringSubmatch(stderr); m != nil {
		drv = m[1]
	}
	var lines []string
	in := false
	for _, l := range strings.Split(stderr, "\n") {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, "last ") && strings.Contains(t, "log lines:"):
			in, lines = true, nil
		case in && strings.HasPrefix(t, ">"):
			lines = append(lines, "  "+t)
		case in && t != "":
			in = false
		}
	}
	return drv, strings.Join(lines, "\n")
}
