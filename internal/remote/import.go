package remote

import (
	"context"
	"io"

	"github.com/skiffdeploy/skiff/internal/transport"
)

// ImportWithoutNixCopy reports whether paths can reach the host as a
// nix-store --export stream read by nix-store --import (Import): a login
// that writes as root (root itself, or sudo that asks for no password)
// over ssh. Elsewhere nix copy's own protocol does it.
func (h *Host) ImportWithoutNixCopy() bool {
	return !h.Conn.Target.Local && (!h.Sudo() || h.CopyWithSudo())
}

// Import adds the store paths of a nix-store --export stream, read from
// in, to the host's store: one nix-store --import, as root, over the shared
// connection (not the session: the stream is long and binary). Each path
// is registered whole or not at all, and nix-store keeps every path it
// imported from a garbage collection until it exits (the deploy's GC root
// holds them afterwards). It is nix copy without that command's own round
// trips: which paths the host lacks is already known.
func (h *Host) Import(ctx context.Context, in io.Reader) error {
	_, err := h.Conn.Command(ctx, transport.Exec{Argv: h.priv("nix-store", "--import"), Stdin: in})
	return err
}
