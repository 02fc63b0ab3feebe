package remote

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"path"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// activateUserScript runs a nix-darwin system's activate-user, when the
// system has one (nix-darwin before 2024 split user activation out).
// Argument: TOPLEVEL.
var activateUserScript = withoutComments(activateUserFile)

//go:embed activate-user.sh
var activateUserFile string

// DarwinActivate activates a nix-darwin system the way darwin-rebuild
// does, without needing darwin-rebuild on the host: TOPLEVEL/activate-user
// as the login user where the system has it, then TOPLEVEL/activate as
// root. Output goes to out as it comes. Like Switch, a non-zero exit is not
// an error here: Activation.ExitCode says how it ended, and step names the
// step that ended it ("activate-user" or "activate").
func (h *Host) DarwinActivate(ctx context.Context, toplevel string, out io.Writer) (act Activation, step string, err error) {
	steps := []struct {
		what string
		argv []string
	}{
		{"activate-user", []string{"sh", "-c", activateUserScript, "sh", toplevel}},
		{"activate", h.priv(path.Join(toplevel, "activate"))},
	}
	for _, s := range steps {
		var res command.Result
		res, err = h.exec(ctx, transport.Exec{Argv: s.argv, Stream: out})
		act.Output += string(res.Stdout) + string(res.Stderr)
		if err == nil {
			continue
		}
		var ce *command.Error
		if errors.As(err, &ce) && ce.ExitCode > 0 && ce.ExitCode != 255 {
			if fe := h.sudoFault(ce); fe != nil {
				return act, s.what, fe
			}
			act.ExitCode = ce.ExitCode
			return act, s.what, nil
		}
		if _, ok := fault.As(err); ok {
			return act, s.what, err
		}
		return act, s.what, fmt.Errorf("%s: %s of %s: %w", h.Name, s.what, toplevel, err)
	}
	return act, "activate", nil
}

// SwitchGeneration points the system profile at an existing generation.
func (h *Host) SwitchGeneration(ctx context.Context, gen int) error {
	_, err := h.RunPriv(ctx, "switch the system profile", false, "nix-env", "-p", Profile, "--switch-generation", fmt.Sprint(gen))
	return err
}
