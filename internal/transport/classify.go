package transport

import (
	"fmt"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
)

// Classify names the layer at which ssh failed to reach target, from the
// client's own messages (exit status 255), and says what to do about it.
func Classify(name string, t Target, stderr string) *fault.Error {
	dest := t.Destination()
	sshv := "ssh -v " + dest
	if t.Port != 0 {
		sshv = fmt.Sprintf("ssh -v -p %d %s", t.Port, dest)
	}
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(stderr, s) {
				return true
			}
		}
		return false
	}
	last := command.Tail(stderr, 1)
	switch {
	case has("Could not resolve hostname", "Name or service not known", "Temporary failure in name resolution", "nodename nor servname"):
		return fault.New(name, fault.DNS,
			fmt.Sprintf("check the name with \"ssh -G %s | grep -i '^hostname'\"; set deployment.targetHost in the flake or a HostName in your ssh config", t.Host),
			"cannot resolve %s (DNS): %s", t.Host, last)
	case has("REMOTE HOST IDENTIFICATION HAS CHANGED", "Host key for", "host key has changed"):
		return fault.New(name, fault.HostKey,
			fmt.Sprintf("if the host was reinstalled, verify its new key out of band, then run \"ssh-keygen -R %s\" and connect once with \"ssh %s\"", t.Host, dest),
			"the host key of %s has CHANGED; refusing to connect", t.Host)
	case has("Host key verification failed", "host key is known", "No matching host key"):
		return fault.New(name, fault.HostKey,
			fmt.Sprintf("verify the host's fingerprint, then add it with \"ssh-keyscan %s >> ~/.ssh/known_hosts\" or connect once with \"ssh %s\"", t.Host, dest),
			"the host key of %s is not known (known_hosts); refusing to connect", t.Host)
	case has("Permission denied"):
		return fault.New(name, fault.Auth,
			fmt.Sprintf("authorize your key for %s on the host (users.users.%s.openssh.authorizedKeys.keys), or see which keys are offered with \"%s\"", t.Login(), t.Login(), sshv),
			"authentication as %s refused: key not authorized (%s)", t.Login(), last)
	case has("Connection refused"):
		return fault.New(name, fault.Refused,
			fmt.Sprintf("sshd is not running on %s or listens on another port (set deployment.targetPort); check from the host's console with \"systemctl status sshd\"", t.Host),
			"connection to %s refused: nothing listens on the ssh port", t.String())
	case has("No route to host", "Network is unreachable"):
		return fault.New(name, fault.Unreach,
			fmt.Sprintf("check the network path to %s (VPN, routes); \"%s\" shows where it stops", t.Host, sshv),
			"no route to %s: %s", t.Host, last)
	case has("timed out", "Connection timed out", "Operation timed out", "Timeout, server"):
		return fault.New(name, fault.Timeout,
			fmt.Sprintf("the host is down or a firewall drops packets to its ssh port; check it is up, then \"%s\"", sshv),
			"connection to %s timed out: %s", t.String(), last)
	}
	return fault.New(name, fault.SSH,
		fmt.Sprintf("run \"%s\" to see where the connection fails", sshv),
		"ssh to %s failed: %s", t.String(), last)
}

func (s *SSH) classify(ce *command.Error) error {
	fe := Classify(s.Name, s.Target, ce.Stderr)
	fe.Err = ce
	return fe
}
