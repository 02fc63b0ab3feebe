package fleet

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/nix"
	"github.com/skiffdeploy/skiff/internal/remote"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// Build hosts (--build-host B, or deployment.buildHost per host, or the
// host itself with deployment.buildOnTarget): the flake
// is evaluated here; the derivations go to B with nix-copy-closure; B builds
// them with nix-store --realise (so B's own nix.conf decides what it can
// build: its system, extra-platforms, builders); skiff reads the closure
// from B. Each target then gets what it lacks straight from B
// (nix-copy-closure run on B, as nixos-rebuild does) when B can reach the
// target with its own ssh configuration and keys; otherwise with
// "nix copy --from ssh://B --to ssh://TARGET" run here, which streams
// through this machine without storing anything in its store, with
// skiff's ssh configuration, keys and known hosts for both ends. skiff puts
// no keys on B.

// builderTarget reads "[USER@]HOST" (validated by flake.ValidBuildHost).
func builderTarget(dest string) transport.Target {
	if u, h, ok := strings.Cut(dest, "@"); ok {
		return transport.Target{Host: h, User: u}
	}
	return transport.Target{Host: dest}
}

// builderConn is the shared connection to build host dest, opened once.
func (r *run) builderConn(dest string) *remote.Host {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.builders[dest]; ok {
		return c
	}
	t, ok := r.builderTargets[dest]
	if !ok {
		t = builderTarget(dest)
	}
	c := &remote.Host{Name: dest, Conn: &transport.SSH{Target: t, Options: r.SSH, Run: r.Runner, Name: dest}}
	r.builders[dest] = c
	return c
}

// buildRemote builds the systems of the hosts that have a build host, one
// batch per build host, the batches in parallel.
func (r *run) buildRemote(ctx context.Context) {
	byBuilder := map[string][]flake.Host{}
	r.mu.Lock()
	for _, h := range r.hosts {
		if b := r.buildHostOf(h); b != "" && !r.refused[h.Name] {
			byBuilder[b] = append(byBuilder[b], h)
		}
	}
	r.mu.Unlock()
	var names []string
	for b := range byBuilder {
		names = append(names, b)
	}
	sort.Strings(names)
	var wg sync.WaitGroup
	for _, b := range names {
		wg.Add(1)
		go func() { defer wg.Done(); r.buildOn(ctx, b, byBuilder[b]) }()
	}
	wg.Wait()
}

// buildOn builds hosts' systems on build host dest and reads their
// closures there.
func (r *run) buildOn(ctx context.Context, dest string, hosts []flake.Host) {
	start := time.Now()
	b := r.builderConn(dest)
	failAll := func(err error) {
		if ctx.Err() != nil {
			r.buildInterrupted(hosts)
			return
		}
		for _, h := range hosts {
			e := err
			if fe, ok := fault.As(err); ok {
				e = fault.Wrap(err, h.Name, fe.Class, fe.Hint, "%s", fe.Msg)
			}
			r.setErr(h.Name, e)
			r.report(h.Name, PhaseBuild, "build on %s failed", dest)
		}
	}
	var drvs, outs []string
	seen := map[string]bool{}
	for _, h := range hosts {
		if !seen[h.DrvPath] {
			seen[h.DrvPath] = true
			drvs = append(drvs, h.DrvPath)
			outs = append(outs, h.OutPath)
		}
	}
	r.report("", PhaseBuild, "building %d system(s) on %s", len(drvs), dest)

	// The derivations (and their sources) go to the build host.
	argv := append([]string{"nix-copy-closure", "--to", b.Conn.Target.Destination()}, drvs...)
	if _, err := r.Runner.Run(ctx, command.Cmd{Argv: argv, Env: []string{"NIX_SSHOPTS=" + b.Conn.SSHOpts()}}); err != nil {
		failAll(builderFault(dest, err, "copy the derivations to build host "+dest,
			fmt.Sprintf("check that %s is reachable (\"%s\") and that its login is root or a trusted Nix user there", dest, b.Conn.ByHand())))
		return
	}
	// Build there; --keep-going builds what it can when one fails.
	_, berr := b.Conn.Command(ctx, transport.Exec{Argv: append([]string{"nix-store", "--realise", "--keep-going"}, drvs...)})
	invalid := map[string]bool{}
	if berr != nil && ctx.Err() != nil {
		r.buildInterrupted(hosts)
		return
	}
	if berr != nil {
		res, err := b.Conn.Command(ctx, transport.Exec{Argv: append([]string{"nix-store", "--check-validity", "--print-invalid"}, outs...)})
		if err != nil {
			failAll(builderFault(dest, berr, "build on "+dest, ""))
			return
		}
		for _, p := range strings.Fields(string(res.Stdout)) {
			invalid[p] = true
		}
		tail := buildErrorLines(berr)
		for _, h := range hosts {
			if invalid[h.OutPath] {
				r.setErr(h.Name, fault.Wrap(berr, h.Name, fault.Build,
					fmt.Sprintf("see the whole log with \"%s\"", b.Conn.ByHand("nix-store", "--read-log", h.DrvPath)),
					"its system failed to build on %s: %s", dest, tail))
				r.report(h.Name, PhaseBuild, "build on %s failed", dest)
			}
		}
	}
	var built []string
	for _, o := range outs {
		if !invalid[o] {
			built = append(built, o)
		}
	}
	if len(built) == 0 {
		return
	}
	// The closures, with sizes, as the build host has them, in the form
	// of nix path-info that every release up to now takes, else in the
	// other (nix.PathInfoJSONFormat).
	res, _, err := nix.AskClosure(func(sub []string) (command.Result, error) {
		argv := append(append([]string{"nix", "--extra-experimental-features", "nix-command"}, sub...), built...)
		return b.Conn.Command(ctx, transport.Exec{Argv: argv})
	}, false)
	if err != nil {
		failAll(builderFault(dest, err, "read the closures on build host "+dest, ""))
		return
	}
	infos, err := nix.ParsePathInfo(res.Stdout)
	if err != nil {
		failAll(fault.Wrap(err, "", fault.Build, "check the nix version on "+dest, "build host %s: %v", dest, err))
		return
	}
	byPath := indexInfos(infos)
	r.mu.Lock()
	for _, h := range hosts {
		if !invalid[h.OutPath] {
			r.closures[h.Name] = closureOf(h.OutPath, byPath)
			r.builtOn[h.Name] = b
		}
	}
	r.mu.Unlock()
	r.report("", PhaseBuild, "built on %s in %s", dest, since(start))
}

// buildErrorLines picks nix's "error:" lines from a failed remote build
// (else its last lines).
func buildErrorLines(err error) string {
	var ce *command.Error
	if !errors.As(err, &ce) {
		return err.Error()
	}
	var keep []string
	for _, l := range strings.Split(ce.Stderr, "\n") {
		if t := strings.TrimSpace(l); strings.HasPrefix(t, "error:") {
			keep = append(keep, t)
		}
	}
	if len(keep) == 0 {
		return command.Tail(ce.Stderr, 3)
	}
	return strings.Join(keep, "; ")
}

// setErr records a host's error, replacing an earlier one (a build failure
// explains more than a connection failure).
func (r *run) setErr(host string, err error) {
	r.mu.Lock()
	r.errs[host] = err
	r.mu.Unlock()
}

// builderFault names a failure of a build host step.
func builderFault(dest string, err error, what, hint string) error {
	if fe, ok := fault.As(err); ok {
		return fault.Wrap(err, fe.Host, fe.Class, fe.Hint, "build host %s: %s", dest, fe.Msg)
	}
	msg := err.Error()
	var ce *command.Error
	if errors.As(err, &ce) {
		msg = command.Tail(ce.Stderr, 3)
	}
	if hint == "" {
		hint = fmt.Sprintf("run the step by hand on %s to see more", dest)
	}
	return fault.Wrap(err, "", fault.Build, hint, "%s failed: %s", what, msg)
}

// copySource is the store a host's closure is copied from: its build
// host's, or "" for this machine's.
func (r *run) copySource(host string) *remote.Host {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.builtOn[host]
}

// directScript runs on a build host: nix-copy-closure to the target with
// the build host's own ssh configuration, keys and known hosts; $1 is
// NIX_SSHOPTS, $2 the target, $3 "-s" or "", then the paths.
//
//go:embed copy-direct.sh
var directScript string

// copyDirect copies path from build host b straight to target c, as
// nixos-rebuild does with --build-host and --target-host: the data then
// crosses this machine's uplink not at all. It needs the build host to
// reach the target with its own ssh configuration and keys (skiff puts no
// keys there), to log in as root (a login that needs sudo is left to the
// copy through this machine), and it never weakens host key checking:
// BatchMode refuses an unknown host key instead of asking.
func (r *run) copyDirect(ctx context.Context, b, c *remote.Host, path string) error {
	if c.Sudo() {
		return errors.New("the target's login is not root")
	}
	opts := "-o BatchMode=yes -o ConnectTimeout=10"
	if c.Conn.Target.Port != 0 {
		opts += fmt.Sprintf(" -p %d", c.Conn.Target.Port)
	}
	subst := ""
	if r.substitute() {
		subst = "-s"
	}
	_, err := b.Conn.Command(ctx, transport.Exec{Argv: []string{"sh", "-c", directScript, "sh", opts, c.Conn.Target.Destination(), subst, path}})
	if err != nil {
		var ce *command.Error
		if errors.As(err, &ce) {
			return errors.New(command.Tail(ce.Stderr, 1))
		}
		return err
	}
	return nil
}
