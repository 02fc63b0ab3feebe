package flake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/skiffdeploy/skiff/internal/fault"
)

// deployRsExample is the hint of every deploy-rs settings error: a node as
// deploy-rs's README writes one.
const deployRsExample = `deploy.nodes.NAME = { hostname = "web1.example.com"; sshUser = "deploy"; sshOpts = [ "-p" "2222" ]; ` +
	`profiles.system = { user = "root"; path = deploy-rs.lib.x86_64-linux.activate.nixos self.nixosConfigurations.NAME; }; }`

// systemProfile is the only profile path skiff deploys a NixOS system to.
const systemProfile = "/nix/var/nix/profiles/system"

// deployRs is what skiff reads of a deploy-rs node (outputs.deploy.nodes.
// NAME): the settings of its system profile as deploy-rs merges them
// (deploy, then the node, then profiles.system), and the names of its
// profiles.
type deployRs struct {
	Hostname        string   `json:"hostname"`
	SSHUser         string   `json:"sshUser"`
	User            string   `json:"user"`
	SSHOpts         []string `json:"sshOpts"`
	MagicRollback   *bool    `json:"magicRollback"`
	ConfirmTimeout  int      `json:"confirmTimeout"`
	RemoteBuild     bool     `json:"remoteBuild"`
	Sudo            string   `json:"sudo"`
	ProfilePath     string   `json:"profilePath"`
	AutoRollback    *bool    `json:"autoRollback"`
	InteractiveSudo bool     `json:"interactiveSudo"`
	Profiles        []string `json:"profiles"`
}

// deployRsError is a usage error in a deploy-rs node's settings, with the
// node's shape as the hint unless one is given.
func deployRsError(host, hint, format string, args ...any) error {
	if hint == "" {
		hint = "in the flake: " + deployRsExample
	}
	return fault.New(host, fault.Usage, hint, format, args...)
}

// decodeDeployRs reads the deploy-rs settings of host (the JSON text the
// evaluation made of them), checking the type of each.
func decodeDeployRs(host string, raw json.RawMessage) (deployRs, error) {
	var d deployRs
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || len(bytes.TrimSpace(raw)) == 0 || bytes.TrimSpace(raw)[0] != '{' {
		return d, deployRsError(host, "", "deploy.nodes.%s must be %s, not %s", host, tSet, nixType(raw))
	}
	err := decodeFields(host, "deploy-rs's ", m, []field{
		{"hostname", &d.Hostname, tString},
		{"sshUser", &d.SSHUser, tString},
		{"user", &d.User, tString},
		{"sshOpts", &d.SSHOpts, tList},
		{"magicRollback", &d.MagicRollback, tBool},
		{"confirmTimeout", &d.ConfirmTimeout, tInt + " (seconds)"},
		{"remoteBuild", &d.RemoteBuild, tBool},
		{"sudo", &d.Sudo, tString},
		{"profilePath", &d.ProfilePath, tString},
		{"autoRollback", &d.AutoRollback, tBool},
		{"interactiveSudo", &d.InteractiveSudo, tBool},
		{"profiles", &d.Profiles, tList},
	})
	if err != nil {
		fe, ok := fault.As(err)
		if !ok {
			return d, err
		}
		return d, deployRsError(host, "", "%s (deploy.nodes.%s, or the deploy or profiles.system level)", fe.Msg, host)
	}
	return d, nil
}

// applyDeployRs makes a deploy-rs node's settings the host's deployment
// settings: deploy-rs writes only what its user set, so each one it gives
// wins over the configuration's deployment.* (whose module may fill in
// defaults). What skiff cannot do as deploy-rs would is refused, with what
// to write instead; settings that only tune deploy-rs's own workings
// (fastConnection, activationTimeout, tempPath) are not read.
//
// A node without sshUser (at any level) logs in as deploy-rs does: as
// localUser, the user running skiff here.
func applyDeployRs(host string, d deployRs, s *Settings, localUser string) error {
	if d.SSHUser == "" {
		if !userRE.MatchString(localUser) {
			return deployRsError(host, "set sshUser in the node (or deploy.sshUser for every node) to the login to use",
				"deploy-rs logs in as the user running it when sshUser is unset, and this user's name %q is not one skiff can pass to ssh", localUser)
		}
		d.SSHUser = localUser
	}
	if d.Hostname != "" {
		if !hostRE.MatchString(d.Hostname) || strings.HasPrefix(d.Hostname, "-") {
			return deployRsError(host, "deploy-rs's hostname must be a host name or an address",
				"invalid deploy.nodes.%s.hostname %q", host, d.Hostname)
		}
		s.TargetHost = d.Hostname
	}
	if !userRE.MatchString(d.SSHUser) {
		return deployRsError(host, "deploy-rs's sshUser must be a user name", "invalid deploy-rs sshUser %q", d.SSHUser)
	}
	s.TargetUser = d.SSHUser
	if d.User != "" && d.User != "root" {
		return deployRsError(host, "remove user from the system profile, or set it to \"root\": skiff activates a system as root (through sudo when sshUser is not root)",
			"deploy-rs's user %q would activate the system as a user that is not root", d.User)
	}
	if d.ProfilePath != "" && d.ProfilePath != systemProfile {
		return deployRsError(host, "remove profilePath from profiles.system: skiff deploys a system to "+systemProfile+", where NixOS boots it from",
			"deploy-rs's profilePath %q is not the system profile", d.ProfilePath)
	}
	if f := strings.Fields(d.Sudo); len(f) > 0 && f[0] != "sudo" {
		return deployRsError(host, "skiff gains root through sudo only (sudo -n, or --ask-sudo-password): remove sudo from the node, and let sshUser use sudo",
			"deploy-rs's sudo %q is not sudo", d.Sudo)
	}
	if d.ConfirmTimeout < 0 || d.ConfirmTimeout > 3600 {
		return deployRsError(host, "confirmTimeout is in seconds, from 1 to 3600", "invalid deploy-rs confirmTimeout %d", d.ConfirmTimeout)
	}
	port, err := sshOptsPort(d.SSHOpts, d.Hostname)
	if err != nil {
		return deployRsError(host, err.hint, "deploy-rs's sshOpts: %s", err.msg)
	}
	if port != 0 {
		s.TargetPort = port
	}
	if d.RemoteBuild {
		s.BuildOnTarget = true
	}
	s.MagicRollback = d.MagicRollback
	s.ConfirmTimeout = d.ConfirmTimeout
	for _, p := range d.Profiles {
		if p != "system" {
			s.OtherProfiles = append(s.OtherProfiles, p)
		}
	}
	return nil
}

// takeSSHOptions takes the port of a host's deployment.sshOptions
// (colmena's) as its targetPort, and refuses any other option, as
// deploy-rs's sshOpts.
func takeSSHOptions(h *Host) error {
	d := &h.Deployment
	dest := d.TargetHost
	if dest == "" {
		dest = h.Name
	}
	port, err := sshOptsPort(d.SSHOptions, dest)
	if err != nil {
		return fault.New(h.Name, fault.Usage, err.hint, "deployment.sshOptions: %s", err.msg)
	}
	if port != 0 && d.TargetPort != 0 && port != d.TargetPort {
		return fault.New(h.Name, fault.Usage, "set the port once: deployment.targetPort, or a port in deployment.sshOptions",
			"deployment.sshOptions gives port %d, deployment.targetPort %d", port, d.TargetPort)
	}
	if port != 0 {
		d.TargetPort = port
	}
	return nil
}

// localUserName is the name of the user running skiff, as deploy-rs
// takes it for a node without sshUser.
func localUserName() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

// optsError is what is wrong with a deploy-rs sshOpts, and what to do.
type optsError struct{ msg, hint string }

// sshOptsPort reads deploy-rs's sshOpts (arguments handed to every ssh
// command). skiff hands ssh no argument from the flake but the port: a
// port (-p N, -o Port=N) is taken; any other option belongs in the ssh
// configuration, where skiff's ssh reads it too, and one that turns host
// key checking off is refused for what it is.
func sshOptsPort(opts []string, hostname string) (int, *optsError) {
	if hostname == "" {
		hostname = "NAME"
	}
	config := func(what string) *optsError {
		return &optsError{msg: fmt.Sprintf("%q is not taken", what),
			hint: fmt.Sprintf("put it in ~/.ssh/config, which skiff's ssh reads: \"Host %s\" then the option as a line; keep only a port in sshOpts (\"-p\" \"2222\")", hostname)}
	}
	port := 0
	takePort := func(v string) *optsError {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > 65535 {
			return &optsError{msg: fmt.Sprintf("invalid port %q", v), hint: "a port is a number from 1 to 65535: sshOpts = [ \"-p\" \"2222\" ]"}
		}
		port = n
		return nil
	}
	for i := 0; i < len(opts); i++ {
		o := opts[i]
		switch {
		case o == "-p" || o == "-o":
			if i+1 == len(opts) {
				return 0, &optsError{msg: fmt.Sprintf("%s has no value", o), hint: "sshOpts = [ \"-p\" \"2222\" ]"}
			}
			i++
			if o == "-p" {
				if err := takePort(opts[i]); err != nil {
					return 0, err
				}
				continue
			}
			o = "-o" + opts[i]
		case strings.HasPrefix(o, "-p"):
			if err := takePort(o[2:]); err != nil {
				return 0, err
			}
			continue
		}
		if !strings.HasPrefix(o, "-o") {
			return 0, config(o)
		}
		kv := strings.TrimSpace(o[2:])
		key, val, _ := strings.Cut(kv, "=")
		if !strings.Contains(kv, "=") {
			key, val, _ = strings.Cut(kv, " ")
		}
		switch strings.ToLower(strings.TrimSpace(key)) {
		case "port":
			if err := takePort(val); err != nil {
				return 0, err
			}
		case "stricthostkeychecking", "userknownhostsfile", "globalknownhostsfile", "checkhostip", "knownhostscommand":
			return 0, &optsError{msg: fmt.Sprintf("%q would change how ssh checks the host's key, and skiff never turns host key checking off", o),
				hint: fmt.Sprintf("remove it, and add the host's key to ~/.ssh/known_hosts once (check what \"ssh-keyscan %s\" prints against the host's own key)", hostname)}
		default:
			return 0, config(o)
		}
	}
	return port, nil
}
