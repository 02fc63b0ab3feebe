package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// Options configure a deploy.
type Options struct {
	Flake    flake.Ref
	Hosts    []string // names; empty selects every host
	Mode     Mode
	User     string // login user for every host, overriding the flake
	SSH      transport.Options
	Parallel int  // hosts deployed at once; 0 means 10
	Force    bool // activate even when the host already runs the new system
	Runner   *command.Runner
	Nix      *nix.Nix
	Reporter Reporter
}

// DiskMargin is kept free on a host's store filesystem beyond what a copy
// needs, so that activation and the database still have room.
const DiskMargin = 16 << 20

type run struct {
	Options
	hosts    []flake.Host
	conns    map[string]*remote.Host
	states   map[string]remote.State
	built    map[string]bool // out path → built
	closures map[string][]nix.PathInfo
	errs     map[string]error // per host, before its pipeline
	mu       sync.Mutex
}

func (r *run) report(host string, phase Phase, format string, args ...any) {
	r.Reporter.Event(Event{Time: time.Now(), Host: host, Phase: phase, Msg: fmt.Sprintf(format, args...)})
}

func (r *run) fail(host string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.errs[host] == nil {
		r.errs[host] = err
	}
}

// Deploy runs a deploy. The error is for failures of the whole run
// (evaluation, bad input); each host's outcome is in its Result.
func Deploy(ctx context.Context, o Options) ([]Result, error) {
	if o.Parallel <= 0 {
		o.Parallel = 10
	}
	r := &run{Options: o, conns: map[string]*remote.Host{}, states: map[string]remote.State{},
		built: map[string]bool{}, closures: map[string][]nix.PathInfo{}, errs: map[string]error{}}

	start := time.Now()
	r.report("", PhaseEval, "evaluating %s", describeSelection(o.Hosts))
	hosts, err := flake.Evaluate(ctx, o.Nix, o.Flake, o.Hosts)
	if err != nil {
		return nil, err
	}
	r.hosts = hosts
	r.report("", PhaseEval, "evaluated %d host(s) in %s", len(hosts), since(start))

	for _, h := range hosts {
		t := transport.Target{Host: h.Name, Port: h.Deployment.TargetPort, User: h.Deployment.TargetUser}
		if h.Deployment.TargetHost != "" {
			t.Host = h.Deployment.TargetHost
		}
		if o.User != "" {
			t.User = o.User
		}
		r.conns[h.Name] = &remote.Host{Name: h.Name, Conn: &transport.SSH{Target: t, Options: o.SSH, Run: o.Runner, Name: h.Name}}
	}
	defer r.closeAll()

	// Build locally while connecting to every host.
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.build(ctx) }()
	go func() { defer wg.Done(); r.connectAll(ctx) }()
	wg.Wait()

	results := make([]Result, len(hosts))
	sem := make(chan struct{}, o.Parallel)
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i] = r.deployHost(ctx, h)
		}()
	}
	wg.Wait()
	return results, nil
}

func describeSelection(names []string) string {
	if len(names) == 0 {
		return "every host of the flake"
	}
	return strings.Join(names, ", ")
}

func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }

func (r *run) closeAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range r.conns {
		wg.Add(1)
		go func() { defer wg.Done(); c.Conn.Close(ctx) }()
	}
	wg.Wait()
}

// connectAll opens each host's shared connection and reads its state.
func (r *run) connectAll(ctx context.Context) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, r.Parallel)
	for _, h := range r.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c := r.conns[h.Name]
			start := time.Now()
			r.report(h.Name, PhaseConnect, "connecting to %s", c.Conn.Target)
			st, err := c.ReadState(ctx)
			if err != nil {
				if fe, ok := fault.As(err); ok && fe.Host == "" {
					fe.Host = h.Name
				}
				r.fail(h.Name, err)
				r.report(h.Name, PhaseConnect, "failed: %v", err)
				return
			}
			r.mu.Lock()
			r.states[h.Name] = st
			r.mu.Unlock()
			r.report(h.Name, PhaseConnect, "connected in %s; %s", since(start), describeState(st))
		}()
	}
	wg.Wait()
}

func describeState(st remote.State) string {
	switch {
	case st.Generation > 0 && st.Current == st.Profile:
		return fmt.Sprintf("running generation %d", st.Generation)
	case st.Generation > 0:
		return fmt.Sprintf("profile at generation %d, running %s", st.Generation, orNone(st.Current))
	case st.Current != "":
		return "no system profile yet, running " + st.Current
	}
	return "no system deployed yet"
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

// build builds every host's toplevel with one nix build and reads the
// closures with one nix path-info.
func (r *run) build(ctx context.Context) {
	start := time.Now()
	var drvs []string
	seen := map[string]bool{}
	for _, h := range r.hosts {
		if !seen[h.DrvPath] {
			seen[h.DrvPath] = true
			drvs = append(drvs, h.DrvPath)
		}
	}
	r.report("", PhaseBuild, "building %d system(s)", len(drvs))
	_, err := r.Nix.Build(ctx, drvs)
	if err != nil {
		r.buildFailed(ctx, err)
	} else {
		for _, h := range r.hosts {
			r.built[h.OutPath] = true
		}
	}
	var outs []string
	for _, h := range r.hosts {
		if r.built[h.OutPath] {
			outs = append(outs, h.OutPath)
		}
	}
	if len(outs) == 0 {
		return
	}
	infos, err := r.Nix.Closure(ctx, outs...)
	if err != nil {
		for _, h := range r.hosts {
			r.fail(h.Name, fmt.Errorf("read closure of %s: %w", h.OutPath, err))
		}
		return
	}
	byPath := map[string]nix.PathInfo{}
	for _, i := range infos {
		byPath[i.Path] = i
	}
	for _, h := range r.hosts {
		if r.built[h.OutPath] {
			r.closures[h.Name] = closureOf(h.OutPath, byPath)
		}
	}
	r.report("", PhaseBuild, "built in %s", since(start))
}

// closureOf walks references from root.
func closureOf(root string, byPath map[string]nix.PathInfo) []nix.PathInfo {
	var out []nix.PathInfo
	seen := map[string]bool{root: true}
	queue := []string{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		info, ok := byPath[p]
		if !ok {
			continue
		}
		out = append(out, info)
		for _, ref := range info.References {
			if !seen[ref] {
				seen[ref] = true
				queue = append(queue, ref)
			}
		}
	}
	return out
}

// buildFailed works out which hosts' systems were not built and gives
// each the failing derivation and the last lines of its log.
func (r *run) buildFailed(ctx context.Context, err error) {
	var ce *command.Error
	stderr := err.Error()
	if errors.As(err, &ce) {
		stderr = ce.Stderr
	}
	var outs []string
	for _, h := range r.hosts {
		outs = append(outs, h.OutPath)
	}
	invalid := map[string]bool{}
	res, verr := r.Runner.Run(ctx, command.Cmd{Argv: append([]string{"nix-store", "--check-validity", "--print-invalid"}, outs...)})
	if verr != nil {
		for _, o := range outs {
			invalid[o] = true
		}
	} else {
		for _, l := range strings.Fields(string(res.Stdout)) {
			invalid[l] = true
		}
	}
	drv, logTail := nix.ParseBuildFailure(stderr)
	for _, h := range r.hosts {
		if !invalid[h.OutPath] {
			r.built[h.OutPath] = true
			continue
		}
		msg := "its system failed to build"
		hint := fmt.Sprintf("see the whole log with \"nix log %s\"", h.DrvPath)
		if drv != "" {
			msg = fmt.Sprintf("its system failed to build: %s failed", drv)
			hint = fmt.Sprintf("see the whole log with \"nix log %s\"", drv)
		}
		if logTail != "" {
			msg += "; last log lines:\n" + logTail
		} else if ce != nil {
			msg += ": " + command.Tail(ce.Stderr, 5)
		}
		// A build failure explains more than a connection failure would.
		r.mu.Lock()
		r.errs[h.Name] = fault.Wrap(err, h.Name, fault.Build, hint, "%s", msg)
		r.mu.Unlock()
		r.report(h.Name, PhaseBuild, "build failed")
	}
}

func (r *run) deployHost(ctx context.Context, h flake.Host) Result {
	start := time.Now()
	res := Result{Host: h.Name, Mode: r.Mode, NewPath: h.OutPath}
	finish := func(status Status, err error) Result {
		res.Status, res.Err, res.Duration = status, err, time.Since(start)
		switch status {
		case Failed, RolledBack:
			msg := err.Error()
			if fe, ok := fault.As(err); ok {
				msg = fe.Msg
			}
			r.report(h.Name, PhaseDone, "%s: %s", status, msg)
		default:
			r.report(h.Name, PhaseDone, "%s in %s", status, since(start))
		}
		return res
	}
	r.mu.Lock()
	err := r.errs[h.Name]
	st := r.states[h.Name]
	closure := r.closures[h.Name]
	r.mu.Unlock()
	if err != nil {
		return finish(Failed, err)
	}
	c := r.conns[h.Name]
	res.OldPath, res.OldGen = st.Current, st.Generation

	if !r.Force && upToDate(r.Mode, st, h.OutPath) {
		res.NewGen = st.Generation
		return finish(UpToDate, nil)
	}
	if _, err := os.Stat(filepath.Join(h.OutPath, "nixos-version")); err != nil && r.Mode != DryActivate {
		return finish(Failed, fault.New(h.Name, fault.Build,
			"nixosConfigurations.NAME.config.system.build.toplevel must be a NixOS system",
			"%s is not a NixOS system (no nixos-version); refusing to activate it", h.OutPath))
	}

	// Copy what the host lacks.
	var paths []string
	var sizes = map[string]int64{}
	for _, p := range closure {
		paths = append(paths, p.Path)
		sizes[p.Path] = p.NarSize
	}
	store, err := c.QueryStore(ctx, paths)
	if err != nil {
		return finish(Failed, err)
	}
	for _, p := range store.Missing {
		res.CopiedBytes += sizes[p]
	}
	res.CopiedPaths = len(store.Missing)
	if store.Free >= 0 && res.CopiedBytes > 0 && res.CopiedBytes+DiskMargin > store.Free {
		return finish(Failed, fault.New(h.Name, fault.Disk,
			fmt.Sprintf("free space on the host: delete old generations and collect garbage (\"ssh %s sudo nix-env -p %s --delete-generations +5 && ssh %s sudo nix-collect-garbage\")",
				c.Conn.Target.Destination(), remote.Profile, c.Conn.Target.Destination()),
			"needs %s in /nix/store, %s free (keeping %s spare); nothing was copied",
			Bytes(res.CopiedBytes), Bytes(store.Free), Bytes(DiskMargin)))
	}
	if len(store.Missing) > 0 {
		r.report(h.Name, PhaseCopy, "copying %d path(s), %s", len(store.Missing), Bytes(res.CopiedBytes))
		cs := time.Now()
		if err := r.copy(ctx, c, h.OutPath); err != nil {
			return finish(Failed, err)
		}
		r.report(h.Name, PhaseCopy, "copied in %s", since(cs))
	} else {
		r.report(h.Name, PhaseCopy, "nothing to copy")
	}

	// Generation, then activation.
	if r.Mode.MakesGeneration() {
		gen, err := c.SetProfile(ctx, h.OutPath)
		if err != nil {
			return finish(Failed, err)
		}
		res.NewGen = gen
		r.report(h.Name, PhaseProfile, "system profile at generation %d", gen)
	} else {
		res.NewGen = 0
		r.report(h.Name, PhaseProfile, "%s creates no generation; the boot default stays generation %d", r.Mode, st.Generation)
	}
	r.report(h.Name, PhaseActivate, "switch-to-configuration %s", r.Mode)
	act, err := c.Switch(ctx, h.OutPath, string(r.Mode), &lineWriter{host: h.Name, r: r})
	res.FailedUnits = act.FailedUnits
	if err != nil {
		// The activation may or may not have run: put the profile back.
		return finish(r.rollback(ctx, c, h, st, &res, err))
	}
	switch act.ExitCode {
	case 0:
		return finish(Deployed, nil)
	case 4:
		units := strings.Join(act.FailedUnits, ", ")
		if units == "" {
			units = "(unnamed)"
		}
		return finish(Failed, fault.New(h.Name, fault.Units,
			fmt.Sprintf("the new system is active; see why with \"ssh %s journalctl -u UNIT -n 50\", fix the configuration and deploy again, or go back with \"ssh %s sudo nixos-rebuild switch --rollback\"",
				c.Conn.Target.Destination(), c.Conn.Target.Destination()),
			"switch-to-configuration %s exited with 4: units failed: %s", r.Mode, units))
	}
	err = fault.New(h.Name, fault.Activation,
		"see the activation output above; fix the configuration and deploy again",
		"switch-to-configuration %s exited with %d (%s)", r.Mode, act.ExitCode, remote.ActivationMeaning(act.ExitCode))
	return finish(r.rollback(ctx, c, h, st, &res, err))
}

// upToDate reports whether the host already has what the mode would make.
func upToDate(m Mode, st remote.State, out string) bool {
	switch m {
	case Switch:
		return st.Current == out && st.Profile == out
	case Boot:
		return st.Profile == out
	case Test:
		return st.Current == out
	}
	return false
}

// rollback returns a host whose activation failed to what it ran and
// booted before: the profile is restored (the failed generation deleted)
// and the previous system activated again.
func (r *run) rollback(ctx context.Context, c *remote.Host, h flake.Host, st remote.State, res *Result, cause error) (Status, error) {
	r.report(h.Name, PhaseRollback, "activation failed; restoring the previous system")
	var errs []error
	if res.NewGen > 0 {
		if err := c.RestoreProfile(ctx, st.Generation, res.NewGen); err != nil {
			errs = append(errs, err)
		}
		res.NewGen = 0
	}
	if r.Mode.MakesGeneration() && st.Profile != "" {
		if _, err := c.Switch(ctx, st.Profile, "boot", &lineWriter{host: h.Name, r: r}); err != nil {
			errs = append(errs, err)
		}
	}
	if r.Mode.Activates() && st.Current != "" {
		if act, err := c.Switch(ctx, st.Current, "test", &lineWriter{host: h.Name, r: r}); err != nil {
			errs = append(errs, err)
		} else if act.ExitCode != 0 && act.ExitCode != 4 {
			errs = append(errs, fmt.Errorf("re-activating %s exited with %d", st.Current, act.ExitCode))
		}
	}
	if len(errs) > 0 {
		return Failed, fault.Wrap(errors.Join(append([]error{cause}, errs...)...), h.Name, fault.Activation,
			fmt.Sprintf("the rollback failed too: check the host from its console (\"ssh %s\" may still work)", c.Conn.Target.Destination()),
			"%v; rolling back failed: %v", cause, errors.Join(errs...))
	}
	if st.Current == "" && st.Profile == "" {
		return Failed, cause
	}
	back := "the previous system " + st.Current
	if st.Generation > 0 && r.Mode.MakesGeneration() {
		back = fmt.Sprintf("generation %d (%s)", st.Generation, st.Profile)
	}
	if fe, ok := fault.As(cause); ok {
		fe.Msg += "; rolled back to " + back
	}
	return RolledBack, cause
}

// copy sends the closure of path with nix copy over the host's shared
// connection.
func (r *run) copy(ctx context.Context, c *remote.Host, path string) error {
	argv := r.Nix.CopyArgs(c.Conn.StoreURL(c.Sudo()), path)
	_, err := r.Runner.Run(ctx, command.Cmd{Argv: argv, Env: []string{"NIX_SSHOPTS=" + c.Conn.SSHOpts()}})
	if err == nil {
		return nil
	}
	var ce *command.Error
	if errors.As(err, &ce) {
		if strings.Contains(ce.Stderr, "No space left on device") {
			return fault.Wrap(err, c.Name, fault.Disk,
				fmt.Sprintf("free space on the host (\"ssh %s sudo nix-collect-garbage\"); the partly copied paths are removed by the next garbage collection", c.Conn.Target.Destination()),
				"copy to %s ran out of disk space", c.Conn.Target)
		}
		if strings.Contains(ce.Stderr, "lacks a valid signature") || strings.Contains(ce.Stderr, "not a trusted user") {
			return fault.Wrap(err, c.Name, fault.Copy,
				fmt.Sprintf("make %s a trusted user on the host (nix.settings.trusted-users = [ \"%s\" ]) or deploy as root", c.Conn.Target.Login(), c.Conn.Target.Login()),
				"the host's Nix refused the copied paths: %s", command.Tail(ce.Stderr, 1))
		}
		return fault.Wrap(err, c.Name, fault.Copy,
			fmt.Sprintf("run the copy by hand to see more: NIX_SSHOPTS='%s' %s", c.Conn.SSHOpts(), command.Join(argv)),
			"copy to %s failed: %s", c.Conn.Target, command.Tail(ce.Stderr, 3))
	}
	return fmt.Errorf("%s: copy: %w", c.Name, err)
}

// lineWriter turns a host command's output into Output events, a line each.
type lineWriter struct {
	host string
	r    *run
	buf  []byte
	mu   sync.Mutex
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			break
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		w.r.Reporter.Event(Event{Time: time.Now(), Host: w.host, Phase: PhaseActivate, Msg: line, Output: true})
	}
	return len(p), nil
}

// Bytes formats a byte count for people.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
