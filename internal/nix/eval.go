package nix

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/skiffdeploy/skiff/internal/command"
)

// EvalExprJSON runs "nix eval --json --impure --show-trace --expr EXPR"
// with env added
// to nix's environment and decodes the result into out. Impure evaluation
// is what lets an expression call builtins.getFlake on a flake reference
// that is not locked (a local directory); the reference reaches the
// expression through env, never through the expression's text. The trace
// carries the error contexts the expression sets (which host failed).
func (n *Nix) EvalExprJSON(ctx context.Context, expr string, env []string, out any) error {
	res, err := n.Run.Run(ctx, command.Cmd{Argv: n.argv("eval", "--json", "--impure", "--show-trace", "--expr", expr), Env: env})
	if err != nil {
		return err
	}
	if err := json.Unmarshal(res.Stdout, out); err != nil {
		return fmt.Errorf("nix eval printed unexpected output: %w", err)
	}
	return nil
}
