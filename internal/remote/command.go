package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/lines"
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
// is ssh's own; a command that exits 255 itself is told apart by the exit
// marker the command's wrapper writes last on its standard error (see
// exitWrapper), which never reaches the caller.
func (h *Host) RunCommand(ctx context.Context, c UserCommand) (CommandResult, error) {
	m := newExitMarker(c.Stderr, c.Stdout)
	argv := append([]string{"sh", "-c", exitWrapper, "sh", m.nonce}, c.Argv...)
	if c.Sudo && h.Sudo() {
		argv = append([]string{"sudo", "-n", "--"}, argv...)
	}
	res, err := h.Conn.Command(ctx, transport.Exec{Argv: argv, Stream: c.Stdout, StreamStderr: m})
	m.flush()
	out := CommandResult{Stdout: res.Stdout, Stderr: m.strip(res.Stderr)}
	if err == nil {
		out.Ran = true
		return out, nil
	}
	if m.seen {
		// The command ran to its end: its exit code is the marker's,
		// 255 included.
		out.Ran, out.ExitCode = true, m.code
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

// exitWrapper runs the user's command ("$@" after the marker's nonce) and
// writes "NONCE CODE" as the last line of its standard error, so that an
// exit code of 255 from the command is told apart from ssh's own.
const exitWrapper = `n=$1; shift; "$@"; s=$?; printf '%s %s\n' "$n" "$s" >&2; exit "$s"`

// exitMarker passes a command's standard error through to w, line by
// line, and takes out the exit marker.
type exitMarker struct {
	nonce string
	w     io.Writer
	lines *lines.Writer
	seen  bool
	code  int
}

func newExitMarker(stderr, stdout io.Writer) *exitMarker {
	w := stderr
	if w == nil {
		w = stdout
	}
	if w == nil {
		w = io.Discard
	}
	b := make([]byte, 8)
	rand.Read(b)
	return &exitMarker{nonce: "skiff-exit-" + hex.EncodeToString(b), w: w}
}

func (m *exitMarker) Write(p []byte) (int, error) {
	if m.lines == nil {
		m.lines = lines.New(m.line)
	}
	return m.lines.Write(p)
}

func (m *exitMarker) line(l []byte) {
	if rest, ok := m.cut(l); ok {
		if len(rest) > 0 { // the command's last line lacked its newline
			m.w.Write(rest)
		}
		return
	}
	m.w.Write(l)
}

// cut reads the marker at the end of line, returning what came before it.
func (m *exitMarker) cut(line []byte) ([]byte, bool) {
	i := bytes.LastIndex(line, []byte(m.nonce+" "))
	if i < 0 {
		return nil, false
	}
	code, err := strconv.Atoi(strings.TrimSpace(string(line[i+len(m.nonce)+1:])))
	if err != nil {
		return nil, false
	}
	m.seen, m.code = true, code
	return line[:i], true
}

// flush passes on a last line without a newline.
func (m *exitMarker) flush() {
	if m.lines != nil {
		m.lines.Flush()
	}
}

// strip takes the marker out of captured standard error.
func (m *exitMarker) strip(stderr []byte) []byte {
	i := bytes.LastIndex(stderr, []byte(m.nonce+" "))
	if i < 0 {
		return stderr
	}
	end := bytes.IndexByte(stderr[i:], '\n')
	if end < 0 {
		return stderr[:i]
	}
	return append(stderr[:i:i], stderr[i+end+1:]...)
}
