package transport

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
)

// The commands printed in hints are typed by the user after skiff has
// exited. They carry the run's -F file and the user's -o options (the
// configuration that decides HostName, Port, IdentityFile and
// UserKnownHostsFile), but never skiff's own defaults: the ControlPath of
// a run lives in a private directory that is gone by then.

// UserArgs are the ssh options the user gave skiff: -F FILE and each -o.
func (o Options) UserArgs() []string {
	var args []string
	if o.ConfigFile != "" {
		args = append(args, "-F", o.ConfigFile)
	}
	for _, e := range o.Extra {
		args = append(args, "-o", e)
	}
	return args
}

// HintOpts is a NIX_SSHOPTS value for a command typed by hand: the user's
// options and the host's port, without the run's connection sharing.
func (s *SSH) HintOpts() string {
	args := s.Options.UserArgs()
	if s.Target.Port != 0 {
		args = append(args, "-p", strconv.Itoa(s.Target.Port))
	}
	return strings.Join(args, " ")
}

// ByHand is the ssh command line, quoted for a shell, that a hint prints:
// ssh with the user's options, then flags, the host's port and login, then
// the remote command. The remote shell reads the command's words again:
// plain words are printed as they are, anything else is quoted for the
// remote shell and then, as one argument, for the local one. On a local
// target it is the command itself.
func ByHand(o Options, t Target, flags []string, remote ...string) string {
	if t.Local {
		if len(remote) == 0 {
			return "true"
		}
		return command.Join(remote)
	}
	argv := append([]string{"ssh"}, o.UserArgs()...)
	argv = append(argv, flags...)
	if t.Port != 0 {
		argv = append(argv, "-p", strconv.Itoa(t.Port))
	}
	argv = append(argv, t.Destination())
	if rc := command.Join(remote); rc != strings.Join(remote, " ") {
		return command.Join(append(argv, rc))
	}
	return command.Join(append(argv, remote...))
}

// ByHand is the ssh command line a hint prints to run remote on this host.
func (s *SSH) ByHand(remote ...string) string {
	return ByHand(s.Options, s.Target, nil, remote...)
}

// Effective is what ssh -G resolves for a destination.
type Effective struct {
	HostName, User, ProxyJump, ProxyCommand string
	Port                                    int
	// KnownHosts is the first UserKnownHostsFile: where ssh looks first
	// and where a new key is recorded.
	KnownHosts string
	// HostKeyAlias, when set, is the name ssh looks the key up by.
	HostKeyAlias string
	Hashed       bool // HashKnownHosts
}

// ParseEffective reads the output of ssh -G.
func ParseEffective(out string) Effective {
	e := Effective{Port: 22}
	for _, l := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		switch strings.ToLower(k) {
		case "hostname":
			e.HostName = v
		case "user":
			e.User = v
		case "port":
			if p, err := strconv.Atoi(v); err == nil {
				e.Port = p
			}
		case "proxyjump":
			if v != "none" {
				e.ProxyJump = v
			}
		case "proxycommand":
			if v != "none" {
				e.ProxyCommand = v
			}
		case "userknownhostsfile":
			if f := strings.Fields(v); len(f) > 0 && e.KnownHosts == "" {
				e.KnownHosts = f[0]
			}
		case "hostkeyalias":
			if v != "none" {
				e.HostKeyAlias = v
			}
		case "hashknownhosts":
			e.Hashed = v == "yes"
		}
	}
	return e
}

// Resolve asks ssh -G what the host's destination resolves to under the
// run's configuration.
func (s *SSH) Resolve(ctx context.Context) (Effective, error) {
	return resolve(ctx, s.Run, ResolveArgv(s.Options, s.Target.Destination(), s.Target.Port))
}

// ConfiguredUser asks ssh -G which user it logs in as at host when none is
// given: the User that the run's ssh configuration gives that host, else
// the local user.
func ConfiguredUser(ctx context.Context, run *command.Runner, o Options, host string, port int) (string, error) {
	e, err := resolve(ctx, run, ResolveArgv(o, host, port))
	if err != nil {
		return "", err
	}
	if e.User == "" {
		return "", errors.New("ssh -G printed no user")
	}
	return e.User, nil
}

// ResolveArgv is the ssh -G command that prints what dest ([USER@]HOST,
// with port unless 0) resolves to under the run's ssh options.
func ResolveArgv(o Options, dest string, port int) []string {
	args := append([]string{"ssh"}, o.UserArgs()...)
	if port != 0 {
		args = append(args, "-p", strconv.Itoa(port))
	}
	return append(args, "-G", dest)
}

func resolve(ctx context.Context, run *command.Runner, argv []string) (Effective, error) {
	res, err := run.Run(ctx, command.Cmd{Argv: argv})
	if err != nil {
		return Effective{}, err
	}
	return ParseEffective(string(res.Stdout)), nil
}

// Peer is what a classification and its hints know about a host: its
// name, the target as given, the run's ssh options and, when known, what
// ssh -G resolved for it.
type Peer struct {
	Name    string
	Target  Target
	Options Options
	Eff     *Effective
}

// shown is the target named in messages: the resolved address and port
// when known.
func (p Peer) shown() Target {
	t := p.Target
	if p.Eff != nil && p.Eff.HostName != "" {
		t.Host, t.Port = p.Eff.HostName, p.Eff.Port
		if t.Port == 22 {
			t.Port = 0
		}
	}
	return t
}

func (p Peer) ssh(flags []string, remote ...string) string {
	return ByHand(p.Options, p.Target, flags, remote...)
}

// keyName is the name known_hosts records the host's key under, as ssh
// looks it up: the HostKeyAlias, else the HostName, as [name]:port when
// the port is not 22.
func (e Effective) keyName() string {
	if e.HostKeyAlias != "" {
		return e.HostKeyAlias
	}
	if e.Port != 0 && e.Port != 22 {
		return fmt.Sprintf("[%s]:%d", e.HostName, e.Port)
	}
	return e.HostName
}

// keyscanType maps the names ssh gives a key type to ssh-keyscan -t's.
func keyscanType(typ string) string {
	t := strings.ToLower(typ)
	switch {
	case strings.Contains(t, "ed25519"):
		return "ed25519"
	case strings.Contains(t, "ecdsa"):
		return "ecdsa"
	case strings.Contains(t, "rsa"):
		return "rsa"
	}
	return ""
}

// shellPath quotes a file name for a shell, leaving a leading ~/ for the
// shell to expand.
func shellPath(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		return "~/" + command.Quote(rest)
	}
	return command.Quote(p)
}

// errNoScan says that no ssh-keyscan command can reach the host from here.
var errNoScan = errors.New("no direct ssh-keyscan")

// keyscan is the command that records the host's key of type typ (any
// type when empty) where ssh will look for it, and the file it writes.
// ssh-keyscan reads no ssh_config: the address, port, file and name come
// from ssh -G.
func (p Peer) keyscan(typ string) (cmd, file string, err error) {
	e := p.Eff
	if e == nil || e.HostName == "" || e.ProxyCommand != "" {
		return "", "", errNoScan
	}
	file = e.KnownHosts
	if file == "" {
		file = "~/.ssh/known_hosts"
	}
	argv := []string{"ssh-keyscan"}
	if e.Hashed && e.HostKeyAlias == "" {
		argv = append(argv, "-H")
	}
	argv = append(argv, "-p", strconv.Itoa(e.Port))
	if t := keyscanType(typ); t != "" {
		argv = append(argv, "-t", t)
	}
	argv = append(argv, e.HostName)
	cmd = command.Join(argv)
	if e.ProxyJump != "" {
		if strings.Contains(e.ProxyJump, ",") {
			return "", "", errNoScan
		}
		// The address is the one the jump host reaches.
		cmd = command.Join(append(append([]string{"ssh"}, p.Options.UserArgs()...), e.ProxyJump)) + " " + cmd
	}
	if e.HostKeyAlias != "" {
		// ssh looks the key up by the alias: record it under that name.
		cmd += " | sed " + command.Quote("s/^[^#][^ ]*/"+e.HostKeyAlias+"/")
	}
	return cmd + " >> " + shellPath(file), file, nil
}

// verify is the hint's second half: the recorded key must be the one the
// host's console shows.
func (p Peer) verify(file string) string {
	name := p.Eff.keyName()
	return fmt.Sprintf("then verify it: \"ssh-keygen -lF %s -f %s\" must show the fingerprint that \"ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\" prints on the host's console (if not, remove it with \"ssh-keygen -f %s -R %s\")",
		command.Quote(name), shellPath(file), shellPath(file), command.Quote(name))
}
