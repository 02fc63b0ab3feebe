package transport

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
)

// Classify names the layer at which ssh failed to reach the peer, from
// the client's own messages (exit status 255), and says what to do about
// it. stderr may include ssh -v debug lines: they add the fingerprint the
// host presented and the keys that were offered. skiff doctor and every
// other command share this one classification.
func Classify(p Peer, stderr string) *fault.Error {
	var plain []string
	for _, l := range strings.Split(stderr, "\n") {
		if !strings.HasPrefix(l, "debug") {
			plain = append(plain, l)
		}
	}
	text := strings.Join(plain, "\n")
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(text, s) {
				return true
			}
		}
		return false
	}
	last := command.Tail(text, 1)
	t := p.Target
	switch {
	case has("Could not resolve hostname", "Name or service not known", "Temporary failure in name resolution", "nodename nor servname"):
		return Fault(p, fault.DNS, last)
	case has("REMOTE HOST IDENTIFICATION HAS CHANGED", "Host key for", "host key has changed"):
		return hostKeyChanged(p, stderr)
	case has("Host key verification failed", "host key is known", "No matching host key"):
		return hostKeyUnknown(p, stderr)
	case has("Permission denied"):
		e := Fault(p, fault.Auth, last)
		if offered, verbose := OfferedKeys(stderr); verbose {
			if len(offered) == 0 {
				e.Msg = fmt.Sprintf("authentication as %s refused: no key was offered (no agent key, no IdentityFile found)", t.Login())
			} else {
				e.Msg = fmt.Sprintf("authentication as %s refused: key not authorized (offered: %s)", t.Login(), strings.Join(offered, ", "))
			}
		}
		return e
	case has("Connection refused"):
		return Fault(p, fault.Refused, last)
	case has("No route to host", "Network is unreachable"):
		return Fault(p, fault.Unreach, last)
	case has("timed out", "Connection timed out", "Operation timed out", "Timeout, server"):
		return Fault(p, fault.Timeout, last)
	case has("kex_exchange_identification", "Connection closed by", "Connection reset by"):
		// sshd drops connections before authentication when it is busy
		// (MaxStartups) or going away: worth another try.
		return Fault(p, fault.SSH, "closed by the host before authentication ("+strings.ReplaceAll(command.Tail(text, 2), "\n", "; ")+")")
	}
	if last == "" {
		// ssh says nothing when it is stopped by a signal after
		// connecting, or when the remote command is killed.
		last = "ssh exited with status 255 without a reason"
	}
	return Fault(p, fault.SSH, last)
}

// Fault is the error for a host that cannot be reached at layer class
// (DNS, Refused, Unreach, Timeout, Auth, SSH), with its hint; detail is
// the underlying message. skiff doctor builds its network findings with
// it too, so that every command names a layer the same way. The commands
// in the hints use the run's ssh configuration (-F, -o).
func Fault(p Peer, class fault.Class, detail string) *fault.Error {
	name, t, shown := p.Name, p.Target, p.shown()
	sshv := p.ssh([]string{"-v"})
	switch class {
	case fault.DNS:
		return fault.New(name, fault.DNS,
			fmt.Sprintf("check the name with \"%s | grep -i '^hostname'\"; set deployment.targetHost in the flake or a HostName in your ssh config",
				command.Join(ResolveArgv(p.Options, t.Host, 0))),
			"cannot resolve %s (DNS): %s", shown.Host, detail)
	case fault.Auth:
		return fault.New(name, fault.Auth,
			fmt.Sprintf("authorize your key for %s on the host (users.users.%s.openssh.authorizedKeys.keys), or see which keys are offered with \"%s\"", t.Login(), t.Login(), sshv),
			"authentication as %s refused: key not authorized (%s)", t.Login(), detail)
	case fault.Refused:
		return fault.New(name, fault.Refused,
			fmt.Sprintf("sshd is not running on %s or listens on another port (set deployment.targetPort); check from the host's console with \"systemctl status sshd\"", shown.Host),
			"connection to %s refused: nothing listens on the ssh port", shown.String())
	case fault.Unreach:
		return fault.New(name, fault.Unreach,
			fmt.Sprintf("check the network path to %s (VPN, routes); \"%s\" shows where it stops", shown.Host, sshv),
			"no route to %s: %s", shown.Host, detail)
	case fault.Timeout:
		return fault.New(name, fault.Timeout,
			fmt.Sprintf("the host is down or a firewall drops packets to its ssh port; check it is up, then \"%s\"", sshv),
			"connection to %s timed out: %s", shown.String(), detail)
	}
	return fault.New(name, fault.SSH,
		fmt.Sprintf("run \"%s\" to see where the connection fails", sshv),
		"ssh to %s failed: %s", shown.String(), detail)
}

var (
	// "The fingerprint for the ED25519 key sent by the remote host is\nSHA256:...."
	sentKeyRE = regexp.MustCompile(`fingerprint for the (\S+) key sent by the remote host is\s*\r?\n?\s*(SHA256:[A-Za-z0-9+/=]+)`)
	// "debug1: Server host key: ssh-ed25519 SHA256:..."
	serverKeyRE = regexp.MustCompile(`Server host key: (\S+) (SHA256:[A-Za-z0-9+/=]+)`)
	// "Offending ED25519 key in /path/known_hosts:3"
	offendingRE = regexp.MustCompile(`Offending (\S+) key in (\S+):(\d+)`)
	// `ssh-keygen -f "/path/known_hosts" -R "127.0.0.2"`
	removeRE = regexp.MustCompile(`ssh-keygen -f "([^"]+)" -R "([^"]+)"`)
	// "debug1: Offering public key: /path ED25519 SHA256:... explicit"
	offerRE = regexp.MustCompile(`Offering public key: (.*?)\s*(\S+) (SHA256:[A-Za-z0-9+/=]+)`)
)

// PresentedKey is the type and fingerprint of the host key the server
// presented, when ssh printed it (always with -v; on a changed key without).
func PresentedKey(stderr string) (typ, fingerprint string) {
	if m := sentKeyRE.FindStringSubmatch(stderr); m != nil {
		return m[1], strings.TrimSuffix(m[2], ".")
	}
	if m := serverKeyRE.FindStringSubmatch(stderr); m != nil {
		return m[1], m[2]
	}
	return "", ""
}

// OfferedKeys lists the public keys ssh -v offered ("ED25519 SHA256:...
// (/path)"); verbose is false when stderr has no debug output to tell.
func OfferedKeys(stderr string) (keys []string, verbose bool) {
	verbose = strings.Contains(stderr, "debug1:")
	for _, m := range offerRE.FindAllStringSubmatch(stderr, -1) {
		k := m[2] + " " + m[3]
		if m[1] != "" {
			k += " (" + m[1] + ")"
		}
		keys = append(keys, k)
	}
	return keys, verbose
}

// noKnownRE: "No ED25519 host key is known for web1 and ..."
var noKnownRE = regexp.MustCompile(`No (\S+) host key is known for`)

func hostKeyChanged(p Peer, stderr string) *fault.Error {
	t := p.shown()
	msg := fmt.Sprintf("the host key of %s has CHANGED", t.Host)
	typ, fp := PresentedKey(stderr)
	if fp != "" {
		msg += fmt.Sprintf(": it presents %s %s", typ, fp)
	}
	if m := offendingRE.FindStringSubmatch(stderr); m != nil {
		msg += fmt.Sprintf(", known_hosts has another %s key (%s line %s)", m[1], m[2], m[3])
	}
	fix := fmt.Sprintf("ssh-keygen -R %s", command.Quote(t.Host))
	if m := removeRE.FindStringSubmatch(stderr); m != nil {
		fix = fmt.Sprintf("ssh-keygen -f %s -R %s", shellPath(m[1]), command.Quote(m[2]))
	}
	hint := fmt.Sprintf("if the host was reinstalled, remove the old key with \"%s\"", fix)
	if scan, file, err := p.keyscan(typ); err == nil {
		hint += fmt.Sprintf(", add the new one with \"%s\", %s", scan, p.verify(file))
	} else {
		hint += fmt.Sprintf(" and add the line of /etc/ssh/ssh_host_ed25519_key.pub from the host's console to your known_hosts, after comparing its fingerprint (\"ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\") with the one ssh reports")
	}
	return fault.New(p.Name, fault.HostKey, hint+"; otherwise treat it as an attack", "%s; refusing to connect", msg)
}

func hostKeyUnknown(p Peer, stderr string) *fault.Error {
	t := p.shown()
	msg := fmt.Sprintf("the host key of %s is not known (known_hosts)", t.Host)
	typ, fp := PresentedKey(stderr)
	if fp != "" {
		msg += fmt.Sprintf("; it presents %s %s", typ, fp)
	} else if m := noKnownRE.FindStringSubmatch(stderr); m != nil {
		typ = m[1]
	}
	hint := "add the line of /etc/ssh/ssh_host_ed25519_key.pub from the host's console to your known_hosts, after comparing its fingerprint (\"ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\") with the one ssh reports"
	if scan, file, err := p.keyscan(typ); err == nil {
		hint = fmt.Sprintf("add the host's key with \"%s\", %s", scan, p.verify(file))
	}
	return fault.New(p.Name, fault.HostKey, hint, "%s; refusing to connect", msg)
}

func (s *SSH) classify(ctx context.Context, ce *command.Error) error {
	p := Peer{Name: s.Name, Target: s.Target, Options: s.Options}
	if fault.ClassOf(Classify(p, ce.Stderr)) == fault.HostKey {
		// The hint names the address, port and known_hosts file that
		// the configuration gives: ssh-keyscan reads no ssh_config.
		if eff, err := s.Resolve(ctx); err == nil {
			p.Eff = &eff
		}
	}
	fe := Classify(p, ce.Stderr)
	fe.Err = ce
	return fe
}
