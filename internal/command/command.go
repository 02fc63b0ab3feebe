package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Cmd is one program to run.
type Cmd struct {
	Argv  []string
	Env   []string  // extra KEY=VALUE entries added to the environment
	Stdin io.Reader // nil means no input
	// Stream, when set, receives standard output and standard error as
	// they are produced, in addition to the captured copies.
	Stream io.Writer
	// StreamStderr, when set, receives standard error as it is produced
	// instead of Stream.
	StreamStderr io.Writer
	// Stdout, when set, receives standard output instead of the captured
	// copy and Stream: for a long binary stream (an *os.File is handed to
	// the program as it is).
	Stdout io.Writer
	// Terminal keeps the program in skiff's process group, where it may
	// use the terminal (a key command asking for a passphrase). Other
	// programs get a process group of their own: a Ctrl-C typed on the
	// terminal reaches skiff alone, which then stops them (or lets them
	// finish) as it decides, instead of every ssh dying at once.
	Terminal bool
}

// Result is what a finished program printed.
type Result struct {
	Stdout []byte
	Stderr []byte
}

// Error is a program that ran and failed, or could not be started.
type Error struct {
	Argv     []string
	ExitCode int // -1 when the program did not start or was killed
	Stderr   string
	Err      error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: exit status %d", e.Argv[0], e.ExitCode)
	if e.ExitCode < 0 && e.Err != nil {
		msg = fmt.Sprintf("%s: %v", e.Argv[0], e.Err)
	}
	if tail := Tail(e.Stderr, 3); tail != "" {
		msg += ": " + strings.ReplaceAll(tail, "\n", "; ")
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Tail returns the last n non-empty lines of s.
func Tail(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, strings.TrimRight(l, " \r"))
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Runner starts programs. The zero value runs them silently.
type Runner struct {
	// Trace, when set, receives "+ argv" before each program runs (-x).
	Trace io.Writer
	mu    sync.Mutex
}

// Run runs c to completion. A non-zero exit is returned as *Error together
// with the captured output.
func (r *Runner) Run(ctx context.Context, c Cmd) (Result, error) {
	r.trace(c)
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if !c.Terminal {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	cmd.Stdin = c.Stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if c.Stream != nil {
		cmd.Stdout = io.MultiWriter(&stdout, c.Stream)
		cmd.Stderr = io.MultiWriter(&stderr, c.Stream)
	}
	if c.StreamStderr != nil {
		cmd.Stderr = io.MultiWriter(&stderr, c.StreamStderr)
	}
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	}
	err := cmd.Run()
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if err == nil {
		return res, nil
	}
	e := &Error{Argv: c.Argv, ExitCode: -1, Stderr: stderr.String(), Err: err}
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() >= 0 {
		e.ExitCode = exit.ExitCode()
	}
	if ctx.Err() != nil {
		e.Err = ctx.Err()
	}
	return res, e
}

// Note writes "+ line" to the trace (-x), for a step that is not a
// program of its own (a request on a host's session).
func (r *Runner) Note(line string) {
	if r == nil || r.Trace == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.Trace, "+ %s\n", line)
}

func (r *Runner) trace(c Cmd) {
	if r == nil || r.Trace == nil {
		return
	}
	line := Join(c.Argv)
	var env string
	for _, kv := range c.Env {
		k, v, _ := strings.Cut(kv, "=")
		env += k + "=" + Quote(v) + " "
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.Trace, "+ %s%s\n", env, line)
}

// Quote quotes s for a POSIX shell, leaving it bare when that is safe.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("@%+=:,./_-^", c)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes each argument once and joins them with spaces: the form a
// POSIX shell (such as the one sshd starts) parses back into argv.
func Join(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}
