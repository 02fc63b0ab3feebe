package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/skiffdeploy/skiff/internal/activate"
	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/human"
	"github.com/skiffdeploy/skiff/internal/lines"
	"github.com/skiffdeploy/skiff/internal/nix"
	"github.com/skiffdeploy/skiff/internal/remote"
)

// DiskMargin is kept free on a host's store filesystem beyond what a copy
// needs, so that activation and the database still have room.
const DiskMargin = 16 << 20

// Deploy runs a deploy. The error is for failures of the whole run
// (evaluation, bad input); each host's outcome is in its Result.
func Deploy(ctx context.Context, o Options) ([]Result, error) {
	s, err := prepare(ctx, o, true, probeDeploy)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if o.BeforeDeploy != nil {
		proceed, err := o.BeforeDeploy(ctx, s)
		if err != nil || !proceed {
			return nil, err
		}
	}
	r := s.run
	r.pushCache(ctx)
	byName := map[string]*Result{}
	results := make([]Result, len(r.hosts))
	for i, h := range r.hosts {
		results[i] = Result{Host: h.Name, Mode: r.Mode, NewPath: h.OutPath, Status: Skipped}
		byName[h.Name] = &results[i]
	}
	failed := false
	for _, w := range Waves(r.hosts, r.Canary) {
		// After an interrupt every host still goes through its pipeline,
		// which stops at once and says where (its build, its connection,
		// before its copy).
		if failed && ctx.Err() == nil {
			for _, h := range w.Hosts {
				byName[h.Name].Note = w.SkipNote
			}
			continue
		}
		if len(r.hosts) > 1 && w.Name != "" && ctx.Err() == nil {
			r.report("", PhaseWave, "%s: %s", w.Name, hostNames(w.Hosts))
		}
		for _, res := range r.deployWave(ctx, w.Hosts) {
			*byName[res.Host] = res
			if res.Status == Failed || res.Status == RolledBack || res.Status == Interrupted {
				failed = true
			}
		}
	}
	r.saveSystems(results)
	return results, nil
}

// saveSystems records, for the next run's guesses (TargetCache.Systems),
// the hosts whose store now holds their new system: deployed, up to
// date, or rolled back after the copy. A host whose deploy failed is
// forgotten.
func (r *run) saveSystems(results []Result) {
	if r.Targets == nil || r.Local || r.Mode == DryActivate {
		return
	}
	systems := map[string]string{}
	for _, res := range results {
		switch res.Status {
		case Deployed, UpToDate, RolledBack:
			systems[res.Host] = res.NewPath
		case Failed, Interrupted:
			systems[res.Host] = ""
		}
	}
	r.Targets.SaveSystems(systems)
}

// Wave is a group of hosts deployed together; the next wave starts only
// when every host of this one succeeded.
type Wave struct {
	Name     string
	Hosts    []flake.Host
	SkipNote string // why its hosts are skipped when an earlier wave failed
}

// Waves orders a deploy so that a bad change hits a non-critical host
// first: canary hosts (the first n non-critical ones), then the other
// non-critical hosts, then the critical ones.
func Waves(hosts []flake.Host, canary int) []Wave {
	var normal, critical []flake.Host
	for _, h := range hosts {
		if h.Deployment.Critical {
			critical = append(critical, h)
		} else {
			normal = append(normal, h)
		}
	}
	var waves []Wave
	if canary > 0 && canary < len(normal) {
		waves = append(waves, Wave{Name: "canary", Hosts: normal[:canary]})
		normal = normal[canary:]
	}
	if len(normal) > 0 {
		name := ""
		if len(waves) > 0 || len(critical) > 0 {
			name = "hosts"
		}
		waves = append(waves, Wave{Name: name, Hosts: normal, SkipNote: "not deployed: the canary failed"})
	}
	if len(critical) > 0 {
		waves = append(waves, Wave{Name: "critical", Hosts: critical, SkipNote: "not deployed: critical hosts go only after every other host succeeded"})
	}
	return waves
}

func hostNames(hosts []flake.Host) string {
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.Name
	}
	return strings.Join(names, ", ")
}

// deployWave deploys hosts in parallel, at most Parallel at once. With
// FailFast, hosts not yet started when one fails are skipped.
func (r *run) deployWave(ctx context.Context, hosts []flake.Host) []Result {
	results := make([]Result, len(hosts))
	var stopped atomic.Bool
	var g errgroup.Group
	g.SetLimit(max(r.Parallel, 1))
	for i, h := range hosts { // in order: with -p 1 hosts go one after the other
		g.Go(func() error {
			if stopped.Load() {
				results[i] = Result{Host: h.Name, Mode: r.Mode, NewPath: h.OutPath, Status: Skipped, Note: "not deployed: --fail-fast after another host failed"}
				return nil
			}
			results[i] = r.deployHost(ctx, h)
			if r.FailFast && (results[i].Status == Failed || results[i].Status == RolledBack) {
				stopped.Store(true)
			}
			return nil
		})
	}
	_ = g.Wait()
	return results
}

func (r *run) deployHost(ctx context.Context, h flake.Host) Result {
	start := time.Now()
	res := Result{Host: h.Name, Mode: r.Mode, NewPath: h.OutPath, Phases: map[Phase]time.Duration{}}
	r.mu.Lock()
	if d, ok := r.connectTime[h.Name]; ok {
		res.Phases[PhaseConnect] = d
	}
	r.mu.Unlock()
	phase, phaseStart := Phase(""), start
	enter := func(p Phase) {
		now := time.Now()
		if phase != "" {
			res.Phases[phase] += now.Sub(phaseStart)
		}
		phase, phaseStart = p, now
	}
	// The new system's GC root on the host, from the store query on (see
	// remote.Root); it goes when the deploy of the host ends, however it
	// ends.
	var root remote.Root
	// The host's session, and the deploy lock its agent keeps, from
	// before the store query to the end.
	// The probe opened it; the deploy of the host closes it.
	sess := r.takeSession(h.Name)
	var lock *remote.Lock
	// leave gives the host back: the GC root, the lock, the session. A
	// reboot leaves before it reboots; finish leaves in every case.
	// The GC root's removal and the release go at once (one round trip
	// on the session).
	var end hostEnd  // sent with a plain activation, it leaves little to do
	var im *anImport // the copy's import, when started before the store query
	leave := sync.OnceFunc(func() {
		im.cancel()
		defer im.wait()
		if end.sent() {
			if sess != nil {
				sess.Close()
			}
			return
		}
		var un func()
		if root.ID != "" {
			un = r.unroot(ctx, r.conns[h.Name], root)
		}
		var rel *remote.Pending
		if lock != nil {
			rel = lock.StartRelease()
		}
		// Nothing else goes to the session: its input ends behind the
		// release, and the agent with it (no round trip to end it).
		r.conns[h.Name].LeaveSession()
		if rel != nil {
			rel.WaitReleased()
		}
		if un != nil {
			un()
		}
		if sess != nil {
			sess.Close()
		}
	})
	end.leave = leave
	finish := func(status Status, err error) Result {
		leave()
		enter("")
		if status == Failed && fault.ClassOf(err) == fault.Interrupted {
			status = Interrupted
		}
		res.Status, res.Err, res.Duration = status, err, time.Since(start)
		msg := fmt.Sprintf("%s in %s", status, since(start))
		switch {
		case err != nil:
			msg = err.Error()
			if fe, ok := fault.As(err); ok {
				msg = fe.Msg
			}
			msg = fmt.Sprintf("%s: %s", status, msg)
		case res.Note != "":
			msg = fmt.Sprintf("%s: %s", status, res.Note)
		}
		r.Reporter.Event(Event{Time: time.Now(), Host: h.Name, Phase: PhaseDone, Msg: msg, Status: status})
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
	if h.Darwin() {
		if err := darwinMode(h, r.Mode); err != nil {
			return finish(Failed, err)
		}
	}
	c := r.conns[h.Name]
	res.OldPath, res.OldGen = st.Current, st.Generation

	// A host not probed (see connectAll) is known only once the state is
	// read under the lock, below.
	r.mu.Lock()
	unprobed := r.unprobed[h.Name]
	r.mu.Unlock()
	upToDateResult := func() Result {
		res.NewGen = st.Generation
		end.state = &st
		if err := r.upToDateKeys(ctx, c, h); err != nil {
			return finish(Failed, err)
		}
		return finish(r.afterDeploy(ctx, c, h, UpToDate, nil, &res, enter, &end))
	}
	if !unprobed && !r.Force && st.UpToDate(string(r.Mode), h.OutPath) {
		return upToDateResult()
	}
	if h.Darwin() {
		if err := checkDarwinToplevel(h); err != nil {
			return finish(Failed, err)
		}
	} else if _, err := os.Stat(filepath.Join(h.OutPath, "nixos-version")); err != nil && r.Mode != DryActivate && r.copySource(h.Name) == nil {
		return finish(Failed, fault.New(h.Name, fault.Build,
			"nixosConfigurations.NAME.config.system.build.toplevel must be a NixOS system",
			"%s is not a NixOS system (no nixos-version); refusing to activate it", h.OutPath))
	}

	// Copy what the host lacks. res.CopiedPaths and CopiedBytes say what
	// was copied, so they are set only once the copy succeeded.
	enter(PhaseCopy)
	var paths []string
	var sizes = map[string]int64{}
	for _, p := range closure {
		paths = append(paths, p.Path)
		sizes[p.Path] = p.NarSize
	}
	// stopped is the result of a host whose copy step failed: interrupted
	// when the run was.
	stopped := func(err error) Result {
		if ctx.Err() != nil {
			return finish(Interrupted, interrupted(h.Name, "before the copy", unchanged))
		}
		return finish(Failed, r.outOfSpace(ctx, c, h.Name, "reading the host's store failed", unchanged, err))
	}
	if ctx.Err() != nil {
		return stopped(ctx.Err())
	}
	// One session for every later step on the host, holding the deploy
	// lock (a dry activation changes nothing and takes none). The probe
	// opened it, unless it could not.
	if sess == nil || !c.InSession() {
		if sess != nil {
			sess.Close()
		}
		if sess, err = c.OpenSession(ctx); err != nil {
			return stopped(err)
		}
	}
	var store remote.Store
	var need int64 // NAR bytes of the missing paths
	root = remote.Root{ID: activate.NewID(time.Now()), Path: h.OutPath}
	counted := func(s remote.Store, err error) error {
		if err != nil {
			return err
		}
		store, need = s, 0
		for _, p := range store.Missing {
			need += sizes[p]
		}
		return nil
	}
	// The store query asks about what the last system lacks, when it
	// can (base); a host that lacks that system is asked about the whole
	// closure (one round trip more).
	base, asked := r.queryPaths(h, paths)
	whole := func(s remote.Store, err error) (remote.Store, error) {
		if err == nil && s.BaseInvalid {
			r.report(h.Name, PhaseCopy, "the host lacks %s, the system the last deploy from here left it: asking about the whole closure", base)
			return c.QueryStore(ctx, paths, root, "")
		}
		return s, err
	}
	query := func() error {
		return counted(whole(c.QueryStore(ctx, asked, root, base)))
	}
	tooFull := func() bool {
		return store.Free >= 0 && need > 0 && need+DiskMargin > store.Free
	}
	if r.Mode == DryActivate {
		err = query()
	} else {
		// Another deploy may have changed the host since it was
		// connected to: the state is read again under the lock. The
		// lock, the state and the store query go at once on the
		// session (one round trip); a refused lock discards the rest.
		var q remote.LockedQuery
		// The copy's import starts now, alongside this round trip, when
		// the host likely lacks the new system: it is ready when the
		// query answers (and told so when nothing is to be copied after
		// all).
		if r.importEarly(c, h) {
			im = r.startImport(ctx, c)
		}
		lock, err = r.lockWith(ctx, c, func() (*remote.Lock, error) {
			var err error
			q, err = c.LockQuery(ctx, LockOwner(""), r.Safety.BreakLock, asked, root, base)
			return q.Lock, err
		})
		if err != nil {
			if ctx.Err() != nil {
				return stopped(err)
			}
			return finish(Failed, err)
		}
		if q.StateErr == nil {
			st = q.State
			res.OldPath, res.OldGen = st.Current, st.Generation
		} else if unprobed {
			return finish(Failed, q.StateErr)
		}
		err = counted(whole(q.Store, q.StoreErr))
	}
	if err != nil {
		return stopped(err)
	}
	if unprobed {
		r.report(h.Name, PhaseConnect, "%s", describeState(st))
		if !r.Force && st.UpToDate(string(r.Mode), h.OutPath) {
			return upToDateResult()
		}
	}
	if tooFull() && r.GC {
		if err := r.collect(ctx, c, store.Free, need); err != nil {
			if ctx.Err() != nil {
				return finish(Interrupted, interrupted(h.Name, "while making room (--gc)", fmt.Sprintf(
					"old generations may have been deleted and garbage collected; nothing was copied or activated; the host still runs %s", running(st))))
			}
			return finish(Failed, err)
		}
		// The collection may also have removed unrooted paths of the
		// new closure: ask again.
		if err := query(); err != nil {
			return stopped(err)
		}
	}
	if tooFull() {
		return finish(Failed, fault.New(h.Name, fault.Disk,
			r.diskHint(h.Name),
			"needs %s in /nix/store, %s free (keeping %s spare); nothing was copied",
			human.Bytes(need), human.Bytes(store.Free), human.Bytes(DiskMargin)))
	}
	if len(store.Missing) > 0 {
		r.report(h.Name, PhaseCopy, "copying %d path(s), %s", len(store.Missing), human.Bytes(need))
		cs := time.Now()
		if from := r.copySource(h.Name); from != nil {
			r.report(h.Name, PhaseCopy, "from build host %s", from.Name)
		}
		sent, err := r.copySent(ctx, c, im, h.OutPath, store.Missing, sizes, need)
		if err != nil {
			if ctx.Err() != nil {
				return finish(Interrupted, interrupted(h.Name, "during the copy", fmt.Sprintf(
					"nothing was activated; the host still runs %s; paths copied so far stay in its store until a garbage collection", running(st))))
			}
			return finish(Failed, err)
		}
		res.CopiedPaths, res.CopiedBytes = len(store.Missing), need
		if r.substitute() {
			// What the host fetched from its substituters did not come
			// from here: count what this machine sent.
			r.report(h.Name, PhaseCopy, "sent %d of %d missing path(s), %s; the host substituted the rest", sent.paths, len(store.Missing), human.Bytes(sent.bytes))
			res.CopiedPaths, res.CopiedBytes = sent.paths, sent.bytes
		}
		r.report(h.Name, PhaseCopy, "copied in %s", since(cs))
	} else {
		r.report(h.Name, PhaseCopy, "nothing to copy")
	}

	if ctx.Err() != nil {
		state := fmt.Sprintf("nothing was activated; the host still runs %s", running(st))
		if res.CopiedPaths > 0 {
			state += "; the copied paths stay in its store until a garbage collection"
		}
		return finish(Interrupted, interrupted(h.Name, "before activation", state))
	}
	// An activation that has started finishes even when the run is
	// interrupted: stopping it half-way would leave the host half-done.
	// The interrupt is announced at once, with what skiff waits for.
	enter(PhaseActivate)
	stop := r.announceInterrupt(ctx, h.Name)
	end.root, end.lock = root, lock
	status, err := r.activate(context.WithoutCancel(ctx), c, h, st, &res, &end)
	if !stop() { // the interrupt was announced
		res.Note = "interrupted during activation, which was let finish"
	}
	return finish(r.afterDeploy(ctx, c, h, status, err, &res, enter, &end))
}

// unroot removes a host's GC root made by the store query; it runs even
// when the deploy was interrupted. A root that stays (the host is gone)
// only keeps that system until the host reboots. On the host's session it
// sends the removal and returns what waits for it: the requests sent
// before that go in the same round trip.
func (r *run) unroot(ctx context.Context, c *remote.Host, root remote.Root) func() {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	p := c.StartUnroot(uctx, root)
	return func() {
		defer cancel()
		if _, err := p.Wait(uctx); err != nil {
			r.report(c.Name, PhaseDone, "could not remove the GC root %s (it goes at the next reboot): %v", root.Link(), err)
		}
	}
}

// copySpec is the nix copy of path's closure to host c.
func (r *run) copySpec(c *remote.Host, path string) nix.Copy {
	return nix.Copy{To: c.Conn.StoreURL(c.CopyWithSudo()), Substitute: r.substitute(), Paths: []string{path}}
}

// copySent is copy, returning what this machine sent. missing, when
// known, are the paths of the closure that the host lacks: they go in one
// stream (importPaths, into im when it was started early) where they can,
// and nix copy sends the rest.
func (r *run) copySent(ctx context.Context, c *remote.Host, im *anImport, path string, missing []string, sizes map[string]int64, total int64) (copyStats, error) {
	if infos, ok := r.canImport(c, missing); ok {
		if err := r.importPaths(ctx, c, im, path, missing, infos, total); err != nil {
			return copyStats{}, err
		}
		return copyStats{paths: len(missing), bytes: total}, nil
	}
	progress := &copyProgress{r: r, host: c.Name, sizes: sizes, total: total}
	spec := r.copySpec(c, path)
	if from := r.copySource(c.Name); from != nil {
		// Straight from the build host when it can reach the target
		// itself; otherwise through this machine.
		err := r.copyDirect(ctx, from, c, path)
		if err == nil {
			r.report(c.Name, PhaseCopy, "copied directly from build host %s", from.Name)
			return copyStats{}, nil
		}
		r.report(c.Name, PhaseCopy, "build host %s cannot copy to %s itself (%v); copying through this machine", from.Name, c.Conn.Target, err)
		spec.From = from.Conn.StoreURL(false)
	}
	argv := r.Nix.CopyArgsOf(spec)
	_, err := r.Runner.Run(ctx, command.Cmd{Argv: argv, Env: []string{"NIX_SSHOPTS=" + c.Conn.SSHOpts()}, Stream: progress})
	if err == nil {
		return progress.sent, nil
	}
	return copyStats{}, r.copyError(c, argv, err)
}

// copyError explains a failed nix copy to host c.
func (r *run) copyError(c *remote.Host, argv []string, err error) error {
	var ce *command.Error
	if errors.As(err, &ce) {
		if words, _ := noSpace(strings.Split(ce.Stderr, "\n")); words != "" {
			return fault.Wrap(err, c.Name, fault.Disk,
				r.diskHint(c.Name)+"; the partly copied paths are removed by that garbage collection",
				"out of disk space: the copy to %s filled the host's disk (%s); nothing was activated", c.Conn.Target, words)
		}
		if strings.Contains(ce.Stderr, "lacks a valid signature") || strings.Contains(ce.Stderr, "not a trusted user") {
			return fault.Wrap(err, c.Name, fault.Copy,
				fmt.Sprintf("make %s a trusted user on the host (nix.settings.trusted-users = [ \"%s\" ]) or deploy as root", c.Conn.Target.Login(), c.Conn.Target.Login()),
				"the host's Nix refused the copied paths: %s", command.Tail(ce.Stderr, 1))
		}
		return fault.Wrap(err, c.Name, fault.Copy,
			fmt.Sprintf("run the copy by hand to see more: \"NIX_SSHOPTS=%s %s\"", command.Quote(c.Conn.HintOpts()), command.Join(argv)),
			"copy to %s failed: %s", c.Conn.Target, command.Tail(ce.Stderr, 3))
	}
	return fmt.Errorf("%s: copy: %w", c.Name, err)
}

// copyStats is what a nix copy sent.
type copyStats struct {
	paths int
	bytes int64 // NAR bytes
}

// copyProgress reads nix copy's "copying path '...'" lines and reports the
// bytes sent so far.
type copyProgress struct {
	sent    copyStats
	r       *run
	host    string
	sizes   map[string]int64
	total   int64
	done    int64
	current int64 // size of the path being copied
	lines   *lines.Writer
}

func (p *copyProgress) Write(b []byte) (int, error) {
	if p.lines == nil {
		p.lines = lines.New(p.line)
	}
	return p.lines.Write(b)
}

func (p *copyProgress) line(l []byte) {
	rest, ok := strings.CutPrefix(string(lines.Trim(l)), "copying path '")
	if !ok || strings.Contains(rest, "' from '") {
		return // not a path, or the host substituting one: not sent from here
	}
	if j := strings.IndexByte(rest, '\''); j > 0 {
		// nix names a path when it starts copying it: the one before it
		// is done.
		p.done += p.current
		p.current = p.sizes[rest[:j]]
		p.sent.paths++
		p.sent.bytes += p.current
		p.r.Reporter.Event(Event{Time: time.Now(), Host: p.host, Phase: PhaseCopy, Progress: true, Done: p.done, Total: p.total,
			Msg: fmt.Sprintf("%s of %s", human.Bytes(p.done), human.Bytes(p.total))})
	}
}

// DefaultGCKeep is how many system generations --gc keeps.
const DefaultGCKeep = 5

func (r *run) gcKeep() int {
	if r.GCKeep > 0 {
		return r.GCKeep
	}
	return DefaultGCKeep
}

// collect makes room on a host whose store is too full for the copy:
// old generations go (never the newest GCKeep, the boot default, the
// running or the booted system), then garbage is collected. Like skiff
// gc, it runs under the host's deploy lock (the deploy's, held since
// before the store query); the system being deployed is safe from it by
// the deploy's GC root.
func (r *run) collect(ctx context.Context, c *remote.Host, free, need int64) error {
	r.report(c.Name, PhaseCopy, "needs %s, %s free: deleting all but the newest %d generations and collecting garbage",
		human.Bytes(need), human.Bytes(free), r.gcKeep())
	deleted, _, err := c.PruneGenerations(ctx, remote.GCPolicy{Keep: r.gcKeep()}, time.Now())
	if err != nil {
		return err
	}
	freed, err := c.CollectGarbage(ctx)
	if err != nil {
		return err
	}
	r.report(c.Name, PhaseCopy, "deleted %d generation(s), freed %s in %d path(s)", len(deleted), human.Bytes(freed.Bytes), freed.Paths)
	return nil
}

// queryPaths is what the store query of h asks about, given paths, the
// closure of its new system: when this machine has the closure of the
// system the last deploy from here left the host (run.lastClosures), only
// the paths that one lacks, with that system as the base the host checks
// (remote.QueryStore). A new NixOS system shares most of its closure,
// often thousands of paths, with the last one. Else base is empty and
// every path is asked about.
func (r *run) queryPaths(h flake.Host, paths []string) (base string, asked []string) {
	r.mu.Lock()
	closure := r.lastClosures[h.Name]
	r.mu.Unlock()
	if len(closure) == 0 {
		return "", paths
	}
	last := make(map[string]bool, len(closure))
	for _, i := range closure {
		last[i.Path] = true
	}
	for _, p := range paths {
		// The new system itself is always asked about: the host roots
		// and realises it (skiff_invalid).
		if !last[p] || p == h.OutPath {
			asked = append(asked, p)
		}
	}
	return r.lastSystems[h.Name], asked
}
