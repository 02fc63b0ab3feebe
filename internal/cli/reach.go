package cli

import (
	"os"

	"github.com/spf13/pflag"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/fleet"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// reach is what every command that connects to hosts starts from: the
// flake, and the ssh options with a private directory for the shared
// connections' sockets. close removes that directory.
type reach struct {
	ref flake.Ref
	ssh transport.Options
	dir string
}

func (r reach) close() { os.RemoveAll(r.dir) }

// reach checks the host selectors and the flake before anything runs, and
// sets up the ssh options.
func (g *globals) reach(selectors []string) (reach, error) {
	if _, err := flake.ParseSelectors(selectors); err != nil {
		return reach{}, err
	}
	ref, err := flake.ParseRef(g.flake)
	if err != nil {
		return reach{}, err
	}
	dir, err := transport.NewControlDir()
	if err != nil {
		return reach{}, err
	}
	sshOpts, err := g.sshOptionsFor(dir)
	if err != nil {
		os.RemoveAll(dir)
		return reach{}, err
	}
	return reach{ref: ref, ssh: sshOpts, dir: dir}, nil
}

// checkHostFlags refuses the flags every command that reaches hosts shares,
// before anything runs.
func checkHostFlags(parallel int, targetUser string) error {
	if parallel < 1 {
		return usageError{errorf("--parallel must be at least 1")}
	}
	if targetUser != "" && !flake.ValidName(targetUser) {
		return usageError{errorf("invalid --target-user %q", targetUser)}
	}
	return nil
}

// hostOptions are the fleet options that diff, status and rollback set
// alike: the flake and ssh options of rc, the selection, the login and
// address flags, the parallelism and the runner. Each adds its own.
func (g *globals) hostOptions(rc reach, run *command.Runner, hosts []string, user, targetHost string, parallel int) fleet.Options {
	return fleet.Options{Flake: rc.ref, Hosts: hosts, User: user, TargetHost: targetHost, SSH: rc.ssh,
		Parallel: parallel, Runner: run, Nix: g.nix(run)}
}

// addTargetHostFlag defines --target-host, nixos-rebuild's, on the
// commands that reach hosts through fleet (deploy, diff, status,
// rollback).
func addTargetHostFlag(f *pflag.FlagSet, v *string) {
	f.StringVar(v, "target-host", "", "reach the one selected host at `[USER@]HOST` instead of its deployment.targetHost, as nixos-rebuild --target-host does")
}

// checkTargetHost refuses a --target-host that is not [USER@]HOST, before
// anything runs.
func checkTargetHost(s string) error {
	if s != "" && !flake.ValidBuildHost(s) {
		return usageError{errorf("invalid --target-host %q (want HOST or USER@HOST)", s)}
	}
	return nil
}

// addRemoteSudoFlags accepts nixos-rebuild's --use-remote-sudo and --sudo
// (deploy, rollback), so that its command lines work as typed: skiff runs
// the privileged steps through sudo -n whenever the login is not root.
func addRemoteSudoFlags(f *pflag.FlagSet) {
	var ignored bool
	for _, name := range []string{"use-remote-sudo", "sudo"} {
		f.BoolVar(&ignored, name, false, "accepted as nixos-rebuild takes it, and changes nothing: skiff uses sudo -n on each host whose login is not root")
	}
}
