package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/skiffdeploy/skiff/internal/activate"
	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/keys"
	"github.com/skiffdeploy/skiff/internal/lines"
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
	Canary   int  // deploy this many hosts first and stop if any fails
	FailFast bool // skip hosts not yet started once one fails
	GC       bool // when a host's store is too full, delete old generations and collect garbage first
	GCKeep   int  // generations --gc keeps; 0 means DefaultGCKeep
	// SudoPassword, when set, is given to sudo, and only sudo, on the
	// hosts whose sudo asks for it (see remote.Host.Password); never in
	// argv or environment.
	SudoPassword string
	// BuildHost, when set, builds every host's system on this ssh
	// destination ([USER@]HOST) instead of locally (deployment.buildHost
	// sets it per host).
	BuildHost string
	// UseSubstitutes lets each target fetch what it can from its own
	// substituters instead of from this machine.
	UseSubstitutes bool
	// Cache, when set, is a binary cache (store URL) every built system is
	// pushed to once before the copies, which then use substitutes.
	Cache string
	// Local deploys to this machine itself, without ssh (deploy --local):
	// commands run directly (through sudo when not root), systems are
	// built here whatever deployment.buildHost says, and the lockout
	// proof is skipped (Safety.NoLockoutProof).
	Local    bool
	Runner   *command.Runner
	Nix      *nix.Nix
	Reporter Reporter
	// BeforeDeploy, when set, runs after preparation and before any host
	// is changed (deploy --plan); returning false deploys nothing.
	BeforeDeploy func(ctx context.Context, s *Session) (bool, error)
	Safety       activate.Options // lock, magic rollback, health (issue 4)
	// Reboot reboots each deployed host and waits, at most RebootTimeout
	// (0 means DefaultRebootTimeout), until it runs the new system (reboot.go).
	Reboot        bool
	RebootTimeout time.Duration
	// TargetHost, when set, is where the one selected host is reached
	// ([USER@]HOST, nixos-rebuild's --target-host), instead of its
	// deployment.targetHost (and targetUser, when USER@ is given).
	TargetHost string
	// InstallBootloader (re)installs each NixOS host's boot loader as the
	// new system becomes its boot default (switch, boot), as
	// nixos-rebuild --install-bootloader does.
	InstallBootloader bool
	// Targets, when set, guesses each selected host's ssh target from an
	// earlier run, so that its connection opens while the flake is
	// evaluated, and records the evaluated ones (see TargetCache).
	Targets TargetCache
}

type run struct {
	// lastSystems: by host, the system the last deploy from here left in
	// its store (TargetCache.Systems); a guess.
	lastSystems map[string]string
	Options
	hosts    []flake.Host
	conns    map[string]*remote.Host
	states   map[string]remote.State
	built    map[string]bool // out path → built
	closures map[string][]*nix.PathInfo
	// lastClosures: by host, the closure of its last system (lastSystems),
	// read with the new closures when this machine's store has it; the
	// store query asks the host only about the rest (see queryPaths).
	lastClosures map[string][]*nix.PathInfo
	errs         map[string]error // per host, before its pipeline
	connectTime  map[string]time.Duration
	refused      map[string]bool         // hosts refused before the build
	builders     map[string]*remote.Host // build hosts by destination
	// builderTargets are the build hosts that are targets themselves
	// (deployment.buildOnTarget), reached as their deploy reaches them.
	builderTargets map[string]transport.Target
	builtOn        map[string]*remote.Host // host → the build host that built its system
	waits          map[string]*activationWait
	keys           map[string][]keys.Key // read by readKeys; never logged
	masters        map[string]master     // speculative connections kept
	// probe says what each host's probe opens; sessions holds the
	// sessions it opened that the command has not taken yet.
	probe    probeKind
	sessions map[string]*remote.Session
	// checked is closed once the local build knows whether the systems
	// are built already (builtAlready); nil when nothing is built.
	checked chan struct{}
	// unprobed: hosts whose state is read only under the deploy lock,
	// in the deploy's first round trip (see connectAll).
	unprobed   map[string]bool
	speculated *speculation
	mu         sync.Mutex
}

// newRun is a run of o with its per-host maps made.
func newRun(o Options) *run {
	return &run{Options: o, conns: map[string]*remote.Host{}, states: map[string]remote.State{},
		built: map[string]bool{}, closures: map[string][]*nix.PathInfo{}, lastClosures: map[string][]*nix.PathInfo{}, errs: map[string]error{},
		connectTime: map[string]time.Duration{}, refused: map[string]bool{},
		builders: map[string]*remote.Host{}, builderTargets: map[string]transport.Target{}, builtOn: map[string]*remote.Host{}, masters: map[string]master{}, sessions: map[string]*remote.Session{}, unprobed: map[string]bool{}}
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

// Session is a selection of hosts evaluated, (optionally) built, and
// connected to: what deploy, diff and status start from.
type Session struct {
	run *run
}

// Prepare evaluates the selected hosts with one nix eval, then builds all
// their systems with one nix build (when build is true) while opening one
// shared ssh connection per host and reading what it runs. Failures of
// single hosts are kept per host (Session.Err); the error is for the run.
func Prepare(ctx context.Context, o Options, build bool) (*Session, error) {
	return prepare(ctx, o, build, probeState)
}

// PrepareSessions is Prepare for a command that runs several steps on each
// host (diff): each host's probe opens its session, the first request of
// which reads the state, and the host's later commands are requests on
// it. Close ends the sessions.
func PrepareSessions(ctx context.Context, o Options, build bool) (*Session, error) {
	return prepare(ctx, o, build, probeSession)
}

// probeKind is what each host's probe opens.
type probeKind int

const (
	// probeState reads the host's state in a command of its own.
	probeState probeKind = iota
	// probeSession reads it as the first request of the host's session:
	// a rollback then takes the session (takeSession), diff runs its
	// steps on it until Close.
	probeSession
	// probeDeploy is probeSession for a deploy, whose probe may also wait
	// for the deploy's first round trip (deferProbe) or read the links
	// alone (expectsNoOp).
	probeDeploy
)

// prepare is Prepare with each host's probe as probe says.
func prepare(ctx context.Context, o Options, build bool, probe probeKind) (*Session, error) {
	if o.Parallel <= 0 {
		o.Parallel = 10
	}
	r := newRun(o)
	r.probe = probe

	start := time.Now()
	r.report("", PhaseEval, "evaluating %s", describeSelection(o.Hosts))
	// The hosts' connections open while the flake is evaluated, where an
	// earlier run says where they go.
	sp := r.speculate(ctx)
	evaluate := flake.Evaluate
	if probe == probeDeploy {
		evaluate = flake.EvaluateToDeploy
	}
	hosts, err := evaluate(ctx, o.Nix, o.Flake, o.Hosts)
	if err != nil {
		sp.settle(r, nil)
		return nil, err
	}
	r.report("", PhaseEval, "evaluated %d host(s) in %s", len(hosts), since(start))
	if !o.Local {
		var onItself []flake.Host
		if hosts, onItself, err = flake.OverSSH(hosts, o.Hosts); err != nil {
			sp.settle(r, nil)
			return nil, err
		}
		for _, h := range onItself {
			r.report(h.Name, PhaseEval, "left out: its deployment.targetHost is null, so it is deployed only on itself (skiff deploy --local %s, there)", h.Name)
		}
	}
	if o.TargetHost != "" {
		if err := targetHostOf(hosts, o.TargetHost, o.Local); err != nil {
			sp.settle(r, nil)
			return nil, err
		}
	}
	if !o.Local {
		if err := UsersFromSSH(ctx, o.Runner, o.SSH, hosts, o.User); err != nil {
			sp.settle(r, nil)
			return nil, err
		}
	}
	r.hosts = hosts
	for _, h := range hosts {
		if p := h.Deployment.OtherProfiles; len(p) > 0 && probe == probeDeploy {
			r.report(h.Name, PhaseEval, "the deploy-rs node's other profiles (%s) are not deployed: skiff deploys its system", strings.Join(p, ", "))
		}
	}
	var local transport.Target
	if o.Local {
		if local, err = transport.LocalTarget(); err != nil {
			return nil, err
		}
		r.Safety.NoLockoutProof = true
		for i := range hosts {
			hosts[i].Deployment.BuildHost = "" // built here, where it runs
		}
	} else {
		// deployment.buildOnTarget (colmena's): the host is its own
		// build host, reached as its deploy reaches it.
		for i := range hosts {
			if d := &hosts[i].Deployment; d.BuildOnTarget && d.BuildHost == "" {
				t := TargetOf(hosts[i], o.User)
				d.BuildHost = t.String()
				r.builderTargets[d.BuildHost] = t
			}
		}
	}
	for _, h := range hosts {
		t := TargetOf(h, o.User)
		if o.Local {
			t = local
		}
		r.conns[h.Name] = &remote.Host{Name: h.Name, Password: o.SudoPassword,
			Conn: &transport.SSH{Target: t, Options: o.SSH, Run: o.Runner, Name: h.Name}}
	}
	sp.settle(r, hosts)
	if o.Targets != nil && !o.Local {
		o.Targets.Save(o.Hosts, r.targetsOf(hosts))
		r.lastSystems = o.Targets.Systems()
	}

	if build && o.Mode.writesKeys() {
		r.readKeys(ctx)
	}
	var wg sync.WaitGroup
	if build {
		r.checkPlatforms(ctx)
		r.checked = make(chan struct{})
		wg.Add(2)
		go func() { defer wg.Done(); r.build(ctx) }()
		go func() { defer wg.Done(); r.buildRemote(ctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); r.connectAll(ctx) }()
	wg.Wait()
	return &Session{run: r}, nil
}

// TargetOf is where a host's ssh connection goes: its deployment settings,
// the attribute name as the default destination, and user overriding the
// flake's targetUser when set.
func TargetOf(h flake.Host, user string) transport.Target {
	t := transport.Target{Host: h.Name, Port: h.Deployment.TargetPort, User: h.Deployment.TargetUser}
	if h.Deployment.TargetHost != "" {
		t.Host = h.Deployment.TargetHost
	}
	if user != "" {
		t.User = user
	}
	return t
}

// UsersFromSSH gives each host whose deployment.targetUser is null
// (colmena's: the login is left to ssh) the user ssh logs in as there, as
// ssh -G resolves it under the run's options: its configuration's User,
// else the local user. skiff needs the login's name before it logs in
// (root, or sudo for the privileged steps). user, when set
// (--target-user), is every host's login and nothing is asked.
func UsersFromSSH(ctx context.Context, run *command.Runner, o transport.Options, hosts []flake.Host, user string) error {
	if user != "" {
		return nil
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range hosts {
		h := &hosts[i]
		if !h.UserFromSSH || h.Deployment.TargetUser != "" {
			continue
		}
		g.Go(func() error {
			t := TargetOf(*h, "")
			u, err := transport.ConfiguredUser(ctx, run, o, t.Host, t.Port)
			if err != nil {
				return fault.Wrap(err, h.Name, fault.SSH, fmt.Sprintf("check the ssh configuration with \"%s\", or give the node a deployment.targetUser", command.Join(transport.ResolveArgv(o, t.Host, t.Port))),
					"deployment.targetUser is null, and ssh -G could not say which user ssh logs in as: %v", err)
			}
			if !flake.ValidUser(u) {
				return fault.New(h.Name, fault.Usage, "give the node a deployment.targetUser, or its ssh configuration a valid User",
					"deployment.targetUser is null, and the ssh configuration gives the invalid user %q", u)
			}
			h.Deployment.TargetUser = u
			return nil
		})
	}
	return g.Wait()
}

// targetHostOf makes dest ([USER@]HOST, --target-host) the destination of
// the one selected host.
func targetHostOf(hosts []flake.Host, dest string, local bool) error {
	if local {
		return fault.New("", fault.Usage, "deploy --local deploys to this machine, without ssh: drop --target-host",
			"--local and --target-host do not go together")
	}
	if len(hosts) != 1 {
		return fault.New("", fault.Usage, "name one host with --target-host (\"skiff deploy web1 --target-host root@10.0.0.5\"), or give each host its deployment.targetHost in the flake",
			"--target-host is one host's address, and %d hosts are selected: %s", len(hosts), hostNames(hosts))
	}
	d := &hosts[0].Deployment
	if user, host, ok := strings.Cut(dest, "@"); ok {
		d.TargetUser, dest = user, host
	}
	d.TargetHost = dest
	return nil
}

// Close ends every host's shared connection.
func (s *Session) Close() { s.run.closeAll() }

// Hosts are the selected hosts, as evaluated.
func (s *Session) Hosts() []flake.Host { return s.run.hosts }

// Remote is the named host's connection.
func (s *Session) Remote(name string) *remote.Host { return s.run.conns[name] }

// State is what the named host ran when it was connected to.
func (s *Session) State(name string) remote.State {
	s.run.mu.Lock()
	defer s.run.mu.Unlock()
	return s.run.states[name]
}

// Closure is the named host's new system closure, with NAR sizes (empty
// when the session did not build or the build failed).
func (s *Session) Closure(name string) []*nix.PathInfo {
	s.run.mu.Lock()
	defer s.run.mu.Unlock()
	return s.run.closures[name]
}

// Err is what went wrong for the named host so far (connecting, building).
func (s *Session) Err(name string) error {
	s.run.mu.Lock()
	defer s.run.mu.Unlock()
	return s.run.errs[name]
}

// Report sends an event to the session's reporter.
func (s *Session) Report(host string, phase Phase, format string, args ...any) {
	s.run.report(host, phase, format, args...)
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
	// The sessions no deploy took (a plan not confirmed, skipped hosts).
	r.mu.Lock()
	for name, s := range r.sessions {
		delete(r.sessions, name)
		wg.Add(1)
		go func() { defer wg.Done(); s.Close() }()
	}
	r.mu.Unlock()
	wg.Wait()
	for _, c := range r.conns {
		wg.Add(1)
		go func() { defer wg.Done(); c.Conn.Close(ctx) }()
	}
	for _, c := range r.builders {
		wg.Add(1)
		go func() { defer wg.Done(); c.Conn.Close(ctx) }()
	}
	wg.Wait()
	r.speculated.wait()
}

// connectAll opens each host's shared connection and reads its state.
func (r *run) connectAll(ctx context.Context) {
	var g errgroup.Group
	g.SetLimit(max(r.Parallel, 1))
	for _, h := range r.hosts {
		g.Go(func() error {
			c := r.conns[h.Name]
			start := time.Now()
			r.report(h.Name, PhaseConnect, "connecting to %s", c.Conn.Target)
			m, speculated := r.masters[h.Name]
			if speculated {
				// The connection opened during the evaluation: the
				// probe rides it once it is up (if it failed, the
				// probe connects and says why).
				select {
				case <-m.done:
				case <-ctx.Done():
				}
			}
			if speculated && ctx.Err() == nil && *m.up && r.checked != nil {
				// Whether the systems are built already is one nix
				// path-info, which a busy machine may still run when
				// the connection is up: its answer decides whether the
				// probe waits for the lock's round trip (deferProbe).
				select {
				case <-r.checked:
				case <-ctx.Done():
				}
			}
			if speculated && ctx.Err() == nil && *m.up && r.deferProbe(c, h) {
				// The connection is up and the system built already:
				// a probe now would be a round trip of its own, which
				// the deploy's first one (the lock, the state under
				// it and the store query) makes needless. The session
				// opens, and the host's deploy reads the state there.
				s, _ := c.OpenSession(ctx)
				if s != nil && !r.startsAtOnce(h.Name) {
					s.Start()
				}
				r.mu.Lock()
				r.sessions[h.Name], r.unprobed[h.Name] = s, true
				r.connectTime[h.Name] = time.Since(start)
				r.mu.Unlock()
				r.report(h.Name, PhaseConnect, "connected in %s", since(start))
				return nil
			}
			var st remote.State
			var err error
			noOp := r.expectsNoOp(h)
			if noOp {
				// The links alone, in one command (no session):
				// all an up-to-date host costs. A host they show
				// is not gets the whole probe.
				st, err = c.ReadLinks(ctx)
				noOp = err != nil || st.UpToDate(string(r.Mode), h.OutPath)
			}
			switch {
			case noOp:
			case r.probe != probeState:
				var s *remote.Session
				s, st, err = c.OpenProbe(ctx)
				if s != nil {
					r.mu.Lock()
					r.sessions[h.Name] = s
					r.mu.Unlock()
				}
			default:
				st, err = c.ReadState(ctx)
			}
			if err != nil && ctx.Err() != nil {
				err = interrupted(h.Name, "while connecting", unchanged)
				r.fail(h.Name, err)
				r.report(h.Name, PhaseConnect, "interrupted")
				return nil
			}
			if err != nil {
				if fe, ok := fault.As(err); ok && fe.Host == "" {
					fe.Host = h.Name
				}
				r.fail(h.Name, err)
				r.report(h.Name, PhaseConnect, "failed: %v", err)
				return nil
			}
			r.mu.Lock()
			r.states[h.Name] = st
			r.connectTime[h.Name] = time.Since(start)
			r.mu.Unlock()
			r.report(h.Name, PhaseConnect, "connected in %s; %s", since(start), describeState(st))
			return nil
		})
	}
	_ = g.Wait()
}

// deferProbe reports whether the probe of host h, whose connection is up,
// can wait for the deploy's first round trip: a deploy (not a dry
// activation, not one that shows a plan first, which needs the state)
// of a root login (a session that cannot fail for sudo's sake) whose
// system is built already.
func (r *run) deferProbe(c *remote.Host, h flake.Host) bool {
	if r.probe != probeDeploy || r.Mode == DryActivate || r.BeforeDeploy != nil || r.Local || c.Sudo() || r.expectsNoOp(h) {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errs[h.Name] == nil && len(r.closures[h.Name]) > 0
}

// expectsNoOp reports whether the deploy of h likely finds the host up to
// date, so that its probe reads only the links (remote.ReadLinks): the
// last deploy from here left the host running this very system, and
// nothing asks for more than "up to date" (no --force, no dry
// activation, no plan shown before the deploy).
func (r *run) expectsNoOp(h flake.Host) bool {
	return r.probe == probeDeploy && !r.Force && r.Mode != DryActivate && r.BeforeDeploy == nil &&
		r.lastSystems[h.Name] == h.OutPath
}

// startsAtOnce reports whether the deploy of host name starts as soon as
// the hosts are connected: one of the first Parallel hosts of the first
// wave. Its session starts with its first requests (which travel in the
// agent's command); a later host's starts at once, so that its channel is
// open when its turn comes.
func (r *run) startsAtOnce(name string) bool {
	waves := Waves(r.hosts, r.Canary)
	if len(waves) == 0 {
		return true
	}
	for i, h := range waves[0].Hosts {
		if h.Name == name {
			return i < max(r.Parallel, 1)
		}
	}
	return false
}

// takeSession is the host's session opened by its probe, now the
// caller's to close; nil when there is none.
func (r *run) takeSession(name string) *remote.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sessions[name]
	delete(r.sessions, name)
	return s
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
	checked := sync.OnceFunc(func() {
		if r.checked != nil {
			close(r.checked)
		}
	})
	defer checked()
	start := time.Now()
	var drvs []string
	seen := map[string]bool{}
	hosts := r.localBuilds()
	if len(hosts) == 0 {
		return
	}
	for _, h := range hosts {
		if !seen[h.DrvPath] {
			seen[h.DrvPath] = true
			drvs = append(drvs, h.DrvPath)
		}
	}
	if r.builtAlready(ctx, hosts, start) {
		return
	}
	checked()
	r.report("", PhaseBuild, "building %d system(s)", len(drvs))
	_, err := r.Nix.Build(ctx, drvs)
	if err != nil && ctx.Err() != nil {
		r.buildInterrupted(hosts)
		return
	}
	if err != nil {
		r.buildFailed(ctx, hosts, err)
	} else {
		for _, h := range hosts {
			r.built[h.OutPath] = true
		}
	}
	var outs []string
	for _, h := range hosts {
		if r.built[h.OutPath] {
			outs = append(outs, h.OutPath)
		}
	}
	if len(outs) == 0 {
		return
	}
	infos, err := r.readClosures(ctx, hosts, outs)
	if err != nil && ctx.Err() != nil {
		r.buildInterrupted(hosts)
		return
	}
	if err != nil {
		for _, h := range hosts {
			r.fail(h.Name, fmt.Errorf("read closure of %s: %w", h.OutPath, err))
		}
		return
	}
	r.keepClosures(hosts, indexInfos(infos))
	r.report("", PhaseBuild, "built in %s", since(start))
}

// builtAlready reads the closures of the hosts' systems when every one of
// them is in the local store already (a skiff build, an earlier deploy or
// another host of the same system made it): one nix path-info, where a
// build would run nix --version, nix build (a cache hit) and then the same
// nix path-info. It reports false, having changed nothing, when a system
// is missing (nix path-info fails on an invalid path, or newer releases
// leave it out): then nix build runs as always.
func (r *run) builtAlready(ctx context.Context, hosts []flake.Host, start time.Time) bool {
	var outs []string
	seen := map[string]bool{}
	for _, h := range hosts {
		if !seen[h.OutPath] {
			seen[h.OutPath] = true
			outs = append(outs, h.OutPath)
		}
	}
	infos, err := r.readClosures(ctx, hosts, outs)
	if err != nil {
		return false
	}
	byPath := indexInfos(infos)
	for _, o := range outs {
		if _, ok := byPath[o]; !ok {
			return false
		}
	}
	for _, h := range hosts {
		r.built[h.OutPath] = true
	}
	r.keepClosures(hosts, byPath)
	r.report("", PhaseBuild, "%d system(s) built already (%s)", len(outs), since(start))
	return true
}

// readClosures reads the closures of outs with one nix path-info, and
// those of the hosts' last systems with them (lastOf) when this machine's
// store has them. When that fails, it reads the closures of outs alone:
// whether a last system is valid here is only guessed from its store
// directory, and nix path-info fails on an invalid path.
func (r *run) readClosures(ctx context.Context, hosts []flake.Host, outs []string) ([]nix.PathInfo, error) {
	if last := r.lastOf(hosts); len(last) > 0 {
		infos, err := r.Nix.Closure(ctx, append(append([]string{}, outs...), last...)...)
		if err == nil || ctx.Err() != nil {
			return infos, err
		}
	}
	return r.Nix.Closure(ctx, outs...)
}

// storeHas reports whether this machine's store likely has path (its
// directory is there; nix path-info says whether it is valid).
var storeHas = func(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// lastOf is the hosts' last systems (lastSystems) that a deploy now
// changes and that this machine's store likely has, each once.
func (r *run) lastOf(hosts []flake.Host) []string {
	var last []string
	seen := map[string]bool{}
	for _, h := range hosts {
		p := r.lastSystems[h.Name]
		if p == "" || p == h.OutPath || seen[p] || !strings.HasPrefix(p, "/nix/store/") {
			continue
		}
		seen[p] = true
		if storeHas(p) {
			last = append(last, p)
		}
	}
	return last
}

// indexInfos indexes nix path-info's answer by path.
func indexInfos(infos []nix.PathInfo) map[string]*nix.PathInfo {
	byPath := make(map[string]*nix.PathInfo, len(infos))
	for i := range infos {
		byPath[infos[i].Path] = &infos[i]
	}
	return byPath
}

// keepClosures keeps each built host's closure, from nix path-info's
// paths by path, and that of its last system when they hold it.
func (r *run) keepClosures(hosts []flake.Host, byPath map[string]*nix.PathInfo) {
	r.mu.Lock()
	for _, h := range hosts {
		if !r.built[h.OutPath] {
			continue
		}
		r.closures[h.Name] = closureOf(h.OutPath, byPath)
		if last := r.lastSystems[h.Name]; last != h.OutPath {
			if _, ok := byPath[last]; ok {
				r.lastClosures[h.Name] = closureOf(last, byPath)
			}
		}
	}
	r.mu.Unlock()
}

// closureOf walks references from root. The records are shared by every
// closure that holds them (one nix path-info answer), not copied: a fleet
// of hosts whose systems share most of thousands of paths keeps each path
// once.
func closureOf(root string, byPath map[string]*nix.PathInfo) []*nix.PathInfo {
	var out []*nix.PathInfo
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

// buildInterrupted records that the interrupt stopped the build of hosts'
// systems. It says more than a connection the interrupt cut, so it replaces
// what was recorded.
func (r *run) buildInterrupted(hosts []flake.Host) {
	for _, h := range hosts {
		r.setErr(h.Name, interrupted(h.Name, "during the build", unchanged))
	}
	r.report("", PhaseBuild, "interrupted")
}

// buildFailed works out which hosts' systems were not built and gives
// each the failing derivation and the last lines of its log.
func (r *run) buildFailed(ctx context.Context, hosts []flake.Host, err error) {
	var ce *command.Error
	stderr := err.Error()
	if errors.As(err, &ce) {
		stderr = ce.Stderr
	}
	var outs []string
	for _, h := range hosts {
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
	for _, h := range hosts {
		if !invalid[h.OutPath] {
			r.built[h.OutPath] = true
			continue
		}
		msg := "its system failed to build"
		hint := fmt.Sprintf("see the whole log with \"nix-store --read-log %s\"", h.DrvPath)
		if drv != "" {
			msg = fmt.Sprintf("its system failed to build: %s failed", drv)
			hint = fmt.Sprintf("see the whole log with \"nix-store --read-log %s\"", drv)
		}
		if logTail != "" {
			msg += "; last log lines:\n" + logTail
		} else if ce != nil {
			msg += ": " + command.Tail(ce.Stderr, 5)
		} else {
			msg += ": " + err.Error() // nix printed what skiff cannot read
		}
		// A build failure explains more than a connection failure would.
		r.mu.Lock()
		r.errs[h.Name] = fault.Wrap(err, h.Name, fault.Build, hint, "%s", msg)
		r.mu.Unlock()
		r.report(h.Name, PhaseBuild, "build failed")
	}
}

// outputLines turns a host command's output into Output events, a line
// each.
func (r *run) outputLines(host string) *lines.Writer {
	return lines.New(func(l []byte) {
		r.Reporter.Event(Event{Time: time.Now(), Host: host, Phase: PhaseActivate, Msg: string(lines.Trim(l)), Output: true})
	})
}
