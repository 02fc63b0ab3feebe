package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// UserCommand is a command a user runs on a host (skiff exec).
type UserCommand struct {
	Argv []string // quoted once, at the SSH boundary
	// Sudo runs Argv as root through "sudo -n" when the login is not root.
	Sudo bool
	// Stdout, when set, receives the command's standard output as it is
	// produced, and Stderr its standard error (Stdout gets both when
	// Stderr is nil). The output is captured in the result as well.
	Stdout, Stderr io.Writer
}

// CommandResult is how a user command ended on a host.
type CommandResult struct {
	Ran      bool // the command ran (its exit code is meaningful)
	ExitCode int
	Stdout   []byte
	Stderr   []byte
}

// RunCommand runs c on the host's shared connection. A command that ran
// and exited non-zero is not an error: its exit code is in the result. The
// error says why the command could not run: the host unreachable
// (classified like every connection), or sudo refusing. The exit code 255
// is ssh's own: a command that exits 255 itself reads as an ssh failure.
func (h *Host) RunCommand(ctx context.Context, c UserCommand) (CommandResult, error) {
	argv := c.Argv
	if c.Sudo && h.Sudo() {
		argv = append([]string{"sudo", "-n", "--"}, argv...)
	}
	res, err := h.Conn.Command(ctx, transport.Exec{Argv: argv, Stream: c.Stdout, StreamStderr: c.Stderr})
	out := CommandResult{Stdout: res.Stdout, Stderr: res.Stderr}
	if err == nil {
		out.Ran = true
		return out, nil
	}
	if _, ok := fault.As(err); ok { // ssh could not connect
		return out, err
	}
	var ce *command.Error
	if !errors.As(err, &ce) || ce.ExitCode < 0 {
		return out, err // ssh did not start, or was interrupted
	}
	if c.Sudo && h.Sudo() && ce.ExitCode == 1 {
		if fe := h.sudoFault(ce); fe != nil {
			if strings.Contains(ce.Stderr, "a password is required") || strings.Contains(ce.Stderr, "a terminal is required") {
				u := h.Conn.Target.Login()
				fe.Hint = fmt.Sprintf("allow password-less sudo for %s (security.sudo.wheelNeedsPassword = false, or \"%s ALL=(ALL) NOPASSWD: ALL\" in sudoers), or log in as root (--target-user root): commands run with sudo -n, never asking for a password", u, u)
			}
			return out, fe
		}
	}
	out.Ran, out.ExitCode = true, ce.ExitCode
	return out, nil
}
