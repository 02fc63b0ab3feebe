package flake

import (
	"context"
	"sort"

	"github.com/skiffdeploy/skiff/internal/nix"
)

// Named is a host's name and tags: what shell completion offers.
type Named struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// namesExpr reads only the names of the configurations and their
// deployment.tags: no toplevel is evaluated, so it costs a fraction of a
// deploy's evaluation. The configurations are Evaluate's (configsExpr).
const namesExpr = "let flake = builtins.getFlake (builtins.getEnv \"" + FlakeEnv + "\"); " + configsExpr +
	"in map (n: { name = n; tags = ((builtins.getAttr n cfgs).config.deployment or {}).tags or []; }) (builtins.attrNames cfgs)"

// Names evaluates the flake's host names and their tags, sorted by name,
// with one cheap nix eval (no system is evaluated).
func Names(ctx context.Context, n *nix.Nix, ref Ref) ([]Named, error) {
	var res []Named
	if err := n.EvalExprJSON(ctx, namesExpr, []string{FlakeEnv + "=" + ref.URL}, &res); err != nil {
		return nil, evalError(err, ref)
	}
	sort.Slice(res, func(i, j int) bool { return res[i].Name < res[j].Name })
	return res, nil
}
