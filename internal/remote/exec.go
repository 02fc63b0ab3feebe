package remote

import (
	"context"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// RunPriv runs argv on the host with the privileges of the deploy (sudo
// -n for a login that is not root), classifying failures like every other
// host operation. fresh opens a new connection instead of the shared one.
func (h *Host) RunPriv(ctx context.Context, what string, fresh bool, argv ...string) (command.Result, error) {
	return h.run(ctx, what, transport.Exec{Argv: h.priv(argv...), Fresh: fresh})
}
