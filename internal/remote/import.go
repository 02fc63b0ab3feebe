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

// Import adds the store paths of a nix-store --export stream to the
// host's store: one nix-store --import, as root, over the shared
// connection (not the session: the stream is long and binary). It reads
// in: first a word line (importScript), "import" followed by the stream,
// or "none" (nothing to import: nix-store never starts). Each path is
// registered whole or not at all, and nix-store keeps every path it
// imported from a garbage collection until it exits (the deploy's GC root
// holds them afterwards). It is nix copy without that command's own round
// trips: which paths the host lacks is already known.
func (h *Host) Import(ctx context.Context, in io.Reader) error {
	_, err := h.Conn.Command(ctx, transport.Exec{Argv: h.priv("sh", "-c", importScript, "skiff-import"), Stdin: in})
	return err
}

// ImportWords are the first line of Import's input.
const (
	ImportGo   = "import\n"
	ImportNone = "none\n"
)

// importScript waits for the deployer's word before it touches the store
// (a nix-store process recreates the store's reserved space, which the
// free space read alongside must not see): "import", then the stream for
// nix-store --import, or anything else to end. sh's read takes the line
// byte by byte, leaving the stream whole. One line: -x traces it on one.
const importScript = `IFS= read -r skiff_word || exit 1; [ "$skiff_word" = import ] || exit 0; exec nix-store --import`
