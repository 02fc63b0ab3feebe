package fleet

import (
	"context"
	"fmt"
	"time"

	"github.com/skiffdeploy/skiff/internal/flake"
)

// Built is one host's system as Build left it in the local store.
type Built struct {
	Host flake.Host
	// Path is the system's store path (the toplevel's out path); valid in
	// the local store when Err is nil.
	Path string
	// ClosureSize is the NAR size of the system's whole closure in bytes
	// (what "nix path-info -S" calls closureSize); 0 when Err is set.
	ClosureSize int64
	Err         error
}

// Build evaluates the selected hosts with one nix eval and builds their
// systems on this machine with one nix build, exactly as a deploy does,
// and touches no host: no ssh connection is opened, and neither
// deployment.buildHost nor buildOnTarget is used. A host whose platform
// this machine cannot build is refused
// before the build, as in a deploy. Failures of single hosts are in their
// Built.Err; the error is for the run (evaluation, bad selectors).
func Build(ctx context.Context, o Options) ([]Built, error) {
	o.BuildHost = ""
	r := newRun(o)

	start := time.Now()
	r.report("", PhaseEval, "evaluating %s", describeSelection(o.Hosts))
	hosts, err := flake.Evaluate(ctx, o.Nix, o.Flake, o.Hosts)
	if err != nil {
		return nil, err
	}
	for i := range hosts {
		hosts[i].Deployment.BuildHost = "" // built here
	}
	r.hosts = hosts
	r.report("", PhaseEval, "evaluated %d host(s) in %s", len(hosts), since(start))
	r.checkPlatforms(ctx)
	r.build(ctx)
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	out := make([]Built, len(hosts))
	for i, h := range hosts {
		b := Built{Host: h, Path: h.OutPath, Err: r.errs[h.Name]}
		if b.Err == nil && !r.built[h.OutPath] {
			b.Err = fmt.Errorf("%s: its system was not built", h.Name)
		}
		if b.Err == nil {
			for _, p := range r.closures[h.Name] {
				b.ClosureSize += p.NarSize
			}
		}
		out[i] = b
	}
	return out, nil
}
