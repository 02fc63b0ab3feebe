package fleet

import (
	"context"
	"fmt"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/nix"
)

// buildPlatform is the platform a host's system is built for: its
// toplevel derivation's system attribute, which is what nix decides by
// (a nix-darwin system is an x86_64-darwin or aarch64-darwin derivation),
// else the platform the configuration declares.
func buildPlatform(h flake.Host) string {
	if h.BuildSystem != "" {
		return h.BuildSystem
	}
	return h.System
}

// checkPlatforms refuses, before anything is built, each host whose system
// this machine cannot build: not its system, not in extra-platforms, no
// builder for it. Hosts built on a build host are the build host's
// business. The other hosts go on.
func (r *run) checkPlatforms(ctx context.Context) {
	var local []flake.Host
	native := true
	for _, h := range r.hosts {
		if p := buildPlatform(h); p != "" && r.buildHostOf(h) == "" {
			local = append(local, h)
			native = native && p == nix.NativeSystem()
		}
	}
	if len(local) == 0 || native {
		return
	}
	c, err := r.Nix.ReadBuildConfig(ctx)
	if err != nil {
		r.report("", PhaseBuild, "cannot read the local nix configuration (%v): nix build decides which platforms it builds", err)
		return
	}
	for _, h := range local {
		p := buildPlatform(h)
		if ok, _ := c.CanBuild(p); ok {
			continue
		}
		what := p
		if h.System != "" && h.System != p {
			what = fmt.Sprintf("%s (the host runs %s)", p, h.System)
		}
		r.refuse(h.Name, fault.New(h.Name, fault.Build, nix.CannotBuildHint(p),
			"this machine (%s) cannot build the system for platform %s: not its system, not in extra-platforms, no builder for it; nothing was built or copied",
			c.System, what))
	}
}

// refuse fails a host before its build: it is neither built nor deployed.
func (r *run) refuse(host string, err error) {
	r.fail(host, err)
	r.mu.Lock()
	r.refused[host] = true
	r.mu.Unlock()
	msg := err.Error()
	if fe, ok := fault.As(err); ok {
		msg = fe.Msg
	}
	r.report(host, PhaseBuild, "refused: %s", msg)
}

// localBuilds are the hosts whose systems this machine builds: neither
// refused nor built on a build host.
func (r *run) localBuilds() []flake.Host {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []flake.Host
	for _, h := range r.hosts {
		if !r.refused[h.Name] && r.buildHostOf(h) == "" {
			out = append(out, h)
		}
	}
	return out
}

// buildHostOf is where h's system is built: --build-host, else
// deployment.buildHost, else "" (this machine).
func (r *run) buildHostOf(h flake.Host) string {
	if r.BuildHost == flake.LocalBuildHost {
		return ""
	}
	if r.BuildHost != "" {
		return r.BuildHost
	}
	return h.Deployment.BuildHost
}
