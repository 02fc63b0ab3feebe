package remote

import (
	"context"
	_ "embed" // the host-side sudo script
	"errors"
	"io"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// How privileged steps run for a login that is not root.
//
// Without a password every privileged argv is "sudo -n -- ARGV": sudo
// never reads standard input, which stays the command's own.
//
// With --ask-sudo-password, the password must reach sudo and nothing
// else. Giving it to "sudo -S" ahead of the command's input is not
// enough: sudo reads it only when it asks, so on a host with NOPASSWD or
// with cached credentials the line would reach the command itself (the
// store query's nix-store would print it in an error; the lock keeper
// would take it for its "release" line). So:
//
//  1. Once per host (sudoAsks), "sudo -n -k true" asks the policy
//     whether sudo needs a password at all; -k ignores cached
//     credentials, so the answer never depends on sudo's timestamp cache
//     (timestamp_timeout=0, tty-keyed tickets). A host that does not
//     need one never receives it: it runs "sudo -n --" like any
//     password-less host, and nix copy goes through "sudo -n nix-store".
//  2. On a host that asks, the argv becomes the host-side script
//     sudo.sh, whose standard input is the password line followed by the
//     command's input. It reads the line with the shell's read builtin,
//     gives it to sudo -S alone on a pipe from the printf builtin, and
//     sudo runs a fixed root shell that replaces that pipe (with
//     /dev/null, or a FIFO carrying the rest of the original input)
//     before it execs the command. Whether sudo read the password or not
//     (a ticket cached meanwhile), the command cannot see it.
//
// The alternative, "sudo -S -v" to prime the cache and then "sudo -n",
// was rejected: it depends on the very cache that timestamp_timeout=0 and
// tty-keyed tickets (each ssh command is a new session) disable.

//go:embed sudo.sh
var sudoFile string

// sudoScript is sudo.sh without its comment lines, which need not travel
// with every privileged command (nor fill the -x trace).
var sudoScript = withoutComments(sudoFile)

func withoutComments(script string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(script, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
		}
	}
	return b.String()
}

// privPrefix starts every privileged argv of a login other than root.
var privPrefix = []string{"sudo", "-n", "--"}

// Sudo reports whether privileged steps need sudo (the login is not root).
func (h *Host) Sudo() bool { return h.Conn.Target.Login() != "root" }

// priv is argv run with the deploy's privileges: as is for root, else
// through "sudo -n --" (exec turns that into sudo.sh on a host whose sudo
// asks for the password).
func (h *Host) priv(argv ...string) []string {
	if !h.Sudo() {
		return argv
	}
	return append(append([]string(nil), privPrefix...), argv...)
}

// CopyWithSudo reports whether nix copy should write through sudo -n on
// the host: a login other than root whose sudo needs no password. Where
// sudo asks for one, the login user must be a trusted Nix user instead,
// since nix copy's own protocol holds standard input.
func (h *Host) CopyWithSudo() bool {
	if !h.Sudo() {
		return false
	}
	if h.Password == "" {
		return true
	}
	h.sudoMu.Lock()
	defer h.sudoMu.Unlock()
	return h.sudoProbed && !h.sudoAsks
}

// exec runs e on the host; a privileged argv on a host whose sudo asks
// for the password goes through sudo.sh.
//
// While a session is open, a privileged argv (any argv for a root login)
// runs on it, unless e asks for a fresh connection or its own standard
// error.
func (h *Host) exec(ctx context.Context, e transport.Exec) (command.Result, error) {
	if s := h.session(); s != nil && !e.Fresh && e.StreamStderr == nil {
		argv, ok := privArgv(e.Argv)
		if !h.Sudo() {
			argv, ok = e.Argv, true
		}
		if ok {
			res, err := s.exec(ctx, argv, e)
			if !errors.Is(err, errSessionGone) {
				return res, err
			}
			// The session has ended: a command of its own.
		}
	}
	if argv, ok := privArgv(e.Argv); ok && h.Password != "" {
		asks, err := h.askingSudo(ctx)
		if err != nil {
			return command.Result{}, err
		}
		if asks {
			e = withPassword(e, argv, h.Password)
		}
	}
	return h.Conn.Command(ctx, e)
}

// privArgv is the command of a privileged argv made by priv.
func privArgv(argv []string) ([]string, bool) {
	if len(argv) <= len(privPrefix) {
		return nil, false
	}
	for i, a := range privPrefix {
		if argv[i] != a {
			return nil, false
		}
	}
	return argv[len(privPrefix):], true
}

// withPassword is e running argv as root through sudo.sh: the password
// travels as the first line of standard input, never in the argv.
func withPassword(e transport.Exec, argv []string, password string) transport.Exec {
	input := "none"
	in := []io.Reader{strings.NewReader(password + "\n")}
	if e.Stdin != nil {
		input = "stdin"
		in = append(in, e.Stdin)
	}
	e.Argv = append([]string{"sh", "-c", sudoScript, "skiff-sudo", input}, argv...)
	e.Stdin = io.MultiReader(in...)
	return e
}

// askingSudo reports whether sudo on the host needs the password, asking
// the host once: "sudo -n -k true" succeeds only when the policy needs no
// password (-k ignores cached credentials). A failure to reach the host
// is an error; any refusal by sudo means the password goes to sudo, whose
// own answer to the real command then says what is wrong.
func (h *Host) askingSudo(ctx context.Context) (bool, error) {
	h.sudoMu.Lock()
	defer h.sudoMu.Unlock()
	if h.sudoProbed {
		return h.sudoAsks, nil
	}
	_, err := h.Conn.Command(ctx, transport.Exec{Argv: []string{"sudo", "-n", "-k", "true"}})
	if err != nil {
		if _, ok := fault.As(err); ok {
			return false, err
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
	}
	h.sudoProbed, h.sudoAsks = true, err != nil
	return h.sudoAsks, nil
}
