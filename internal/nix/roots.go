package nix

import (
	"context"

	"github.com/skiffdeploy/skiff/internal/command"
)

// AddRootArgs is the argv that makes link an indirect garbage collector
// root for the valid store path path, as "nix build --out-link" does: the
// symlink link points at path, and the store's gcroots/auto points at
// link, so the path lives as long as link does.
func AddRootArgs(link, path string) []string {
	return []string{"nix-store", "--add-root", link, "--indirect", "--realise", path}
}

// AddRoot makes link a garbage collector root for path (see AddRootArgs).
func (n *Nix) AddRoot(ctx context.Context, link, path string) error {
	_, err := n.Run.Run(ctx, command.Cmd{Argv: AddRootArgs(link, path)})
	return err
}
