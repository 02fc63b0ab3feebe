package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skiffdeploy/skiff/internal/command"
)

// Options are the ssh settings shared by every connection of a run.
type Options struct {
	ConfigFile     string        // -F FILE; empty means the user's ordinary configuration
	Extra          []string      // extra -o KEY=VALUE options
	ConnectTimeout time.Duration // ConnectTimeout; 0 means 10s
	ControlDir     string        // private directory for ControlPath sockets
}

// NewControlDir makes a private directory for multiplexing sockets.
func NewControlDir() (string, error) {
	return os.MkdirTemp("", "skiff-ssh-")
}

// Validate refuses settings that cannot travel through NIX_SSHOPTS, which
// Nix splits on white space.
func (o Options) Validate() error {
	if strings.ContainsAny(o.ConfigFile, " \t\n") {
		return fmt.Errorf("ssh config file path %q contains white space, which NIX_SSHOPTS cannot carry", o.ConfigFile)
	}
	for _, e := range o.Extra {
		if strings.ContainsAny(e, " \t\n") || !strings.Contains(e, "=") {
			return fmt.Errorf("ssh option %q must be KEY=VALUE without white space", e)
		}
	}
	return nil
}

// Args is the option list used for every ssh invocation of a run and for
// NIX_SSHOPTS: batch mode, a connect timeout, keep-alives and connection
// reuse through a private ControlPath. Host key checking keeps the user's
// setting (never off).
func (o Options) Args() []string {
	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	var args []string
	if o.ConfigFile != "" {
		args = append(args, "-F", o.ConfigFile)
	}
	// ssh keeps the first value it reads for an option: the user's own
	// come before skiff's defaults so that they win.
	for _, e := range o.Extra {
		args = append(args, "-o", e)
	}
	args = append(args,
		"-o", "BatchMode=yes",
		"-o", "ConnectTimeout="+strconv.Itoa(int(timeout.Seconds())),
		"-o", "ServerAliveInterval=5",
		"-o", "ServerAliveCountMax=3",
	)
	if o.ControlDir != "" {
		args = append(args,
			"-o", "ControlMaster=auto",
			"-o", "ControlPath="+filepath.Join(o.ControlDir, "%C"),
			"-o", "ControlPersist=60",
		)
	}
	return args
}

// Target is where a host's commands go.
type Target struct {
	Host string // ssh destination: a name from ssh config, a DNS name or an address
	Port int    // 0 means the ssh configuration decides
	User string // empty means root
	// Local is this machine itself: commands run directly, without ssh
	// (skiff deploy --local). User is then the user skiff runs as.
	Local bool
}

// LocalTarget is this machine, reached without ssh, as the user skiff
// runs as (not root means sudo for privileged steps, as on any host).
func LocalTarget() (Target, error) {
	u, err := user.Current()
	if err != nil {
		return Target{}, fmt.Errorf("find the current user: %w", err)
	}
	return Target{Host: "localhost", User: u.Username, Local: true}, nil
}

// Login returns the user skiff logs in as.
func (t Target) Login() string {
	if t.User == "" {
		return "root"
	}
	return t.User
}

// Destination is USER@HOST.
func (t Target) Destination() string { return t.Login() + "@" + t.Host }

func (t Target) String() string {
	if t.Local {
		return t.Destination() + " (this machine, no ssh)"
	}
	if t.Port != 0 {
		return fmt.Sprintf("%s:%d", t.Destination(), t.Port)
	}
	return t.Destination()
}

// SSH runs commands on one host.
type SSH struct {
	Target  Target
	Options Options
	Run     *command.Runner
	// Name is the host's name in the flake, used in messages.
	Name string

	mu     sync.Mutex
	opened bool
}

func (s *SSH) baseArgs() []string {
	args := s.Options.Args()
	if s.Target.Port != 0 {
		args = append(args, "-p", strconv.Itoa(s.Target.Port))
	}
	return args
}

// SSHOpts is the value of NIX_SSHOPTS for this host: the same options as
// skiff's own ssh calls.
func (s *SSH) SSHOpts() string { return strings.Join(s.baseArgs(), " ") }

// StoreURL is the Nix store URL of the host's store for nix copy. A login
// that is not root reaches the store through sudo, which writes the paths
// as root: no trusted-users entry is needed.
func (s *SSH) StoreURL(sudo bool) string {
	if s.Target.Local {
		return "auto" // this machine's own store
	}
	u := "ssh://" + s.Target.Destination()
	if sudo {
		u += "?remote-program=sudo%20-n%20nix-store"
	}
	return u
}

// Exec is one remote command.
type Exec struct {
	Argv   []string
	Stdin  io.Reader
	Stream io.Writer
	// StreamStderr, when set, receives the command's standard error
	// instead of Stream.
	StreamStderr io.Writer
	// Fresh opens a new connection instead of the shared one (nothing
	// for a local target).
	Fresh bool
}

// Command runs argv on the host. Each element of argv is quoted once for
// the remote shell; nothing else is. On a local target argv runs as it is,
// on this machine, through the same runner (so -x traces it).
func (s *SSH) Command(ctx context.Context, e Exec) (command.Result, error) {
	if s.Target.Local {
		return s.Run.Run(ctx, command.Cmd{Argv: e.Argv, Stdin: e.Stdin, Stream: e.Stream, StreamStderr: e.StreamStderr})
	}
	args := []string{"ssh"}
	if e.Fresh {
		// ssh keeps the first value of an option: this one must come
		// before the shared ControlPath (and the user's options).
		args = append(args, "-o", "ControlPath=none")
	}
	args = append(args, s.baseArgs()...)
	remote := command.Join(e.Argv)
	args = append(args, s.Target.Destination(), "--", remote)
	res, err := s.Run.Run(ctx, command.Cmd{Argv: args, Stdin: e.Stdin, Stream: e.Stream, StreamStderr: e.StreamStderr})
	if err != nil {
		var ce *command.Error
		// An ssh stopped by ctx (it exits 255 with nothing to say once
		// connected) did not fail to reach the host.
		if errors.As(err, &ce) && ce.ExitCode == 255 && ctx.Err() == nil {
			return res, s.classify(ctx, ce)
		}
		return res, err
	}
	s.mu.Lock()
	s.opened = true
	s.mu.Unlock()
	return res, nil
}

// Close ends the shared connection, if one was opened.
func (s *SSH) Close(ctx context.Context) {
	s.mu.Lock()
	opened := s.opened
	s.opened = false
	s.mu.Unlock()
	if !opened || s.Options.ControlDir == "" {
		return
	}
	args := append([]string{"ssh"}, s.baseArgs()...)
	args = append(args, "-O", "exit", s.Target.Destination())
	_, _ = s.Run.Run(ctx, command.Cmd{Argv: args})
}

// Master opens the shared connection without running anything on the
// host (ssh -N): it returns once the connection is up and kept in the
// background (ControlPersist), or failed. Commands run afterwards ride it.
// It is how a run connects to a host speculatively, before it knows that
// the host is selected there: nothing runs on the host, and a caller that
// does not want the connection ends it with Close. Nothing for a local
// target or without a ControlDir.
func (s *SSH) Master(ctx context.Context) error {
	if s.Target.Local || s.Options.ControlDir == "" {
		return nil
	}
	args := append([]string{"ssh"}, s.baseArgs()...)
	args = append(args, "-N", s.Target.Destination())
	_, err := s.Run.Run(ctx, command.Cmd{Argv: args})
	if err == nil || ctx.Err() != nil {
		// Stopped half-way, the master may be up already: Close ends
		// it either way.
		s.mu.Lock()
		s.opened = true
		s.mu.Unlock()
	}
	return err
}
