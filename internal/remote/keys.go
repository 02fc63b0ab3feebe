package remote

import (
	"bytes"
	"context"
	_ "embed" // the host-side keys script
	"errors"
	"fmt"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/keys"
	"github.com/skiffdeploy/skiff/internal/transport"
)

//go:embed keys.sh
var keysFile string

// keysScript is keys.sh without its comment lines.
var keysScript = withoutComments(keysFile)

// WriteKeys writes ks on the host with one privileged ssh command: their
// contents travel on its standard input (keys.Frame), never in its argv.
// Each key is written to a temporary file in its directory and renamed
// into place once all of them have arrived. Errors name keys, never
// contents.
func (h *Host) WriteKeys(ctx context.Context, ks []keys.Key) error {
	if len(ks) == 0 {
		return nil
	}
	frame, err := keys.Frame(ks)
	if err != nil {
		return fault.Wrap(err, h.Name, fault.Usage, "fix deployment.keys in the flake", "%v", err)
	}
	_, err = h.exec(ctx, transport.Exec{Argv: h.priv("sh", "-c", keysScript, "skiff-keys"), Stdin: bytes.NewReader(frame)})
	if err == nil {
		return nil
	}
	if _, ok := fault.As(err); ok {
		return err
	}
	var ce *command.Error
	if !errors.As(err, &ce) {
		return fmt.Errorf("%s: write keys: %w", h.Name, err)
	}
	if fe := h.sudoFault(ce); fe != nil {
		return fe
	}
	// keys.sh's messages name keys and paths only; the argv (the script)
	// holds no key either, but is not worth repeating.
	return fault.New(h.Name, keys.Class,
		fmt.Sprintf("check the destination directories and that the users and groups exist on the host (\"%s\")", h.Conn.ByHand("id")),
		"writing keys failed (exit %d): %s", ce.ExitCode, command.Tail(ce.Stderr, 1))
}
