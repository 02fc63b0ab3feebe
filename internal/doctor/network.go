package doctor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/remote"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// session is what one host's checks learn and share.
type session struct {
	o     Options
	local *localBuild
	t     Target
	eff   transport.Effective // from ssh -G
	conn  net.Conn            // the TCP connection of the tcp check, read by ssh-banner
	login loginResult         // the verbose ssh login of host-key and auth
	host  *remote.Host
	facts *remote.Facts
}

type loginResult struct {
	done   bool
	stderr string
	stdout string // the facts the login's command printed
	err    error
}

func newSession(o Options, local *localBuild, t Target) *session {
	conn := &transport.SSH{Target: t.Target, Options: o.SSH, Run: o.Runner, Name: t.Name}
	return &session{o: o, local: local, t: t, host: &remote.Host{Name: t.Name, Conn: conn}}
}

func (s *session) close() {
	if s.conn != nil {
		s.conn.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.host.Conn.Close(ctx)
}

// via says how the host is reached when ssh does not connect directly.
func (s *session) via() string {
	switch {
	case s.eff.ProxyJump != "":
		return "ProxyJump " + s.eff.ProxyJump
	case s.eff.ProxyCommand != "":
		return "ProxyCommand"
	}
	return ""
}

// sshArgs are the options of a run, with the host's port, without
// connection sharing when shared is false.
func (s *session) sshArgs(shared bool) []string {
	o := s.o.SSH
	if !shared {
		o.ControlDir = ""
	}
	args := append([]string{"ssh"}, o.Args()...)
	if !shared {
		// A master kept by the user's own ControlPersist would hold
		// ssh -v's standard error open.
		args = append(args, "-o", "ControlPath=none")
	}
	if s.t.Target.Port != 0 {
		args = append(args, "-p", strconv.Itoa(s.t.Target.Port))
	}
	return args
}

func checkSSHConfig(ctx context.Context, s *session) Finding {
	argv := append(s.sshArgs(false), "-G", s.t.Target.Destination())
	res, err := s.o.Runner.Run(ctx, command.Cmd{Argv: argv})
	if err != nil {
		var ce *command.Error
		msg := err.Error()
		if errors.As(err, &ce) {
			msg = command.Tail(ce.Stderr, 2)
		}
		return Finding{Status: Fail, Class: fault.SSH, Detail: "ssh -G cannot read the ssh configuration: " + msg,
			Hint: "fix the ssh configuration (~/.ssh/config or the -F file) at the line ssh names"}
	}
	s.eff = transport.ParseEffective(string(res.Stdout))
	d := fmt.Sprintf("%s@%s port %d", s.eff.User, s.eff.HostName, s.eff.Port)
	if v := s.via(); v != "" {
		d += " via " + v
	}
	if s.eff.HostName != s.t.Target.Host {
		d += fmt.Sprintf(" (%s is an alias)", s.t.Target.Host)
	}
	return ok("%s", d)
}

// peer is the host for classifications and hints: as given, with what
// ssh -G resolved once the ssh-config check has run.
func (s *session) peer() transport.Peer {
	p := transport.Peer{Name: s.t.Name, Target: s.t.Target, Options: s.o.SSH}
	if s.eff.HostName != "" {
		eff := s.eff
		p.Eff = &eff
	}
	return p
}

func checkDNS(ctx context.Context, s *session) Finding {
	if v := s.via(); v != "" {
		return skip("the address is resolved by the %s side", v)
	}
	if ip := net.ParseIP(s.eff.HostName); ip != nil {
		return ok("%s is an address", s.eff.HostName)
	}
	addrs, err := net.DefaultResolver.LookupHost(ctx, s.eff.HostName)
	if err != nil {
		detail := err.Error()
		var de *net.DNSError
		if errors.As(err, &de) {
			switch {
			case de.IsNotFound:
				detail = "no such name"
			case de.IsTimeout:
				detail = "the resolver did not answer"
			default:
				detail = de.Err
			}
		}
		f := failed(transport.Fault(s.peer(), fault.DNS, detail))
		return f
	}
	return ok("%s resolves to %s", s.eff.HostName, strings.Join(addrs, ", "))
}

func checkTCP(ctx context.Context, s *session) Finding {
	if v := s.via(); v != "" {
		return skip("connected through %s: the auth check covers it", v)
	}
	addr := net.JoinHostPort(s.eff.HostName, strconv.Itoa(s.eff.Port))
	d := net.Dialer{Timeout: s.o.SSH.ConnectTimeout}
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		class, detail := fault.SSH, err.Error()
		var ne net.Error
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			class, detail = fault.Refused, "connection refused"
		case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
			class, detail = fault.Unreach, "no route to host"
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
			class, detail = fault.Timeout, fmt.Sprintf("no answer from %s within %s", addr, time.Since(start).Round(100*time.Millisecond))
		}
		return failed(transport.Fault(s.peer(), class, detail))
	}
	s.conn = c
	return ok("%s accepts connections", addr)
}

func checkBanner(ctx context.Context, s *session) Finding {
	if s.conn == nil {
		return skip("connected through %s: the auth check covers it", s.via())
	}
	deadline := time.Now().Add(s.o.SSH.ConnectTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = s.conn.SetReadDeadline(deadline)
	line, err := bufio.NewReader(s.conn).ReadString('\n')
	line = strings.TrimSpace(line)
	switch {
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		return failed(transport.Fault(s.peer(), fault.Timeout, "connected, but no SSH banner came (an overloaded sshd, or not sshd at all)"))
	case err != nil && line == "":
		return failed(transport.Fault(s.peer(), fault.SSH, "the host closed the connection before its SSH banner (sshd MaxStartups, tcp wrappers or fail2ban)"))
	case !strings.HasPrefix(line, "SSH-"):
		if len(line) > 60 {
			line = line[:60]
		}
		return failed(transport.Fault(s.peer(), fault.SSH, fmt.Sprintf("the port speaks something other than SSH: %q (wrong port?)", line)))
	}
	return ok("%s", line)
}

// sshLogin logs in once, verbosely and without connection sharing, so that
// ssh tells which host key it saw and which keys it offered; the command
// it runs reads the host's facts (remote.FactsCommand), so that the
// on-host checks need no other ssh command.
func (s *session) sshLogin(ctx context.Context) loginResult {
	if s.login.done {
		return s.login
	}
	argv := append(s.sshArgs(false), "-v", s.t.Target.Destination(), "--", command.Join(remote.FactsCommand()))
	res, err := s.o.Runner.Run(ctx, command.Cmd{Argv: argv})
	l := loginResult{done: true, stderr: string(res.Stderr), stdout: string(res.Stdout)}
	var ce *command.Error
	switch {
	case err == nil:
	case ctx.Err() != nil:
		l.err = transport.Fault(s.peer(), fault.Timeout, "ssh did not log in within the host's time limit")
	case errors.As(err, &ce) && ce.ExitCode == 255:
		l.err = transport.Classify(s.peer(), ce.Stderr)
	default:
		l.err = fmt.Errorf("ssh %s: %w", s.t.Target.Destination(), err)
	}
	s.login = l
	return l
}

func checkHostKey(ctx context.Context, s *session) Finding {
	l := s.sshLogin(ctx)
	if l.err != nil && fault.ClassOf(l.err) != fault.Auth {
		return failed(l.err)
	}
	typ, fp := transport.PresentedKey(l.stderr)
	if fp == "" {
		return ok("known (known_hosts)")
	}
	return ok("%s %s matches known_hosts", typ, fp)
}

func checkAuth(ctx context.Context, s *session) Finding {
	l := s.sshLogin(ctx)
	if l.err != nil {
		return failed(l.err)
	}
	keys, _ := transport.OfferedKeys(l.stderr)
	if n := len(keys); n > 0 {
		return ok("logged in as %s with %s", s.t.Target.Login(), keys[n-1])
	}
	return ok("logged in as %s", s.t.Target.Login())
}
