package remote

import (
	"context"
	"io"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// RunPriv runs argv on the host with the privileges of the deploy (sudo
// -n for a login that is not root), classifying failures like every other
// host operation. fresh opens a new connection instead of the shared one.
func (h *Host) RunPriv(ctx context.Context, what string, fresh bool, argv ...string) (command.Result, error) {
	return h.run(ctx, what, transport.Exec{Argv: h.priv(argv...), Fresh: fresh})
}

// RunPrivStream is RunPriv passing the command's standard output to out
// as it comes.
func (h *Host) RunPrivStream(ctx context.Context, what string, fresh bool, out io.Writer, argv ...string) (command.Result, error) {
	e := transport.Exec{Argv: h.priv(argv...), Fresh: fresh, Stream: out}
	if fresh {
		// Only the command's output; a fresh connection is never the
		// session's anyway.
		e.StreamStderr = io.Discard
	}
	return h.run(ctx, what, e)
}
