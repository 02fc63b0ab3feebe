package fleet

import (
	"context"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// TargetCache remembers where the hosts of a selection were reached in an
// earlier run (their evaluated deployment.targetHost, targetUser and
// targetPort), so that a run can open their connections while it
// evaluates. What it returns is a guess: the evaluation decides.
type TargetCache interface {
	// Load returns the targets of the hosts that selection chose last
	// time, by host name; nil when it does not know them all.
	Load(selection []string) map[string]transport.Target
	// Save records the targets of the hosts selection chose.
	Save(selection []string, targets map[string]transport.Target)
	// Systems returns, by host name, the system each host ran when a
	// deploy last left it (deployed, or found up to date).
	Systems() map[string]string
	// SaveSystems records them; an empty path forgets the host's.
	SaveSystems(systems map[string]string)
}

// speculation is the connections opened, from the cache's guesses, while
// the flake is evaluated. A host whose evaluated target is the guessed one
// keeps its connection (its probe waits for it and rides it); the others
// are stopped and closed. Nothing runs on a host through them (ssh -N),
// and their failures are never reported: the real connection reports its
// own.
type speculation struct {
	conns  map[string]*transport.SSH
	done   map[string]chan struct{}
	up     map[string]*bool // the connection is up; read once done is closed
	cancel map[string]context.CancelFunc
	wg     sync.WaitGroup
}

// speculate opens, in the background, the connections the cache guesses
// for the selection.
func (r *run) speculate(ctx context.Context) *speculation {
	sp := &speculation{conns: map[string]*transport.SSH{}, done: map[string]chan struct{}{}, up: map[string]*bool{}, cancel: map[string]context.CancelFunc{}}
	if r.Targets == nil || r.Local || r.SSH.ControlDir == "" {
		return sp
	}
	targets := r.Targets.Load(r.Hosts)
	names := make([]string, 0, len(targets))
	for name := range targets {
		names = append(names, name)
	}
	sort.Strings(names)
	// At most Parallel handshakes at once, as connectAll would.
	slots := semaphore.NewWeighted(int64(max(r.Parallel, 1)))
	for _, name := range names {
		c := &transport.SSH{Target: targets[name], Options: r.SSH, Run: r.Runner, Name: name}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		up := new(bool)
		sp.conns[name], sp.done[name], sp.up[name], sp.cancel[name] = c, done, up, cancel
		go func() {
			defer close(done)
			if slots.Acquire(cctx, 1) != nil {
				return
			}
			defer slots.Release(1)
			// The real connection reports any failure.
			*up = c.Master(cctx) == nil
		}()
	}
	return sp
}

// settle keeps the connections whose guess the evaluation confirmed and
// hands them to the run (connectAll waits for them); it stops and closes
// the others, in the background (closeAll waits for that). With hosts nil
// (the evaluation failed) it closes them all before it returns.
func (sp *speculation) settle(r *run, hosts []flake.Host) {
	keep := map[string]bool{}
	for _, h := range hosts {
		c, ok := sp.conns[h.Name]
		if ok && r.conns[h.Name] != nil && r.conns[h.Name].Conn.Target == c.Target {
			keep[h.Name] = true
			r.masters[h.Name] = master{done: sp.done[h.Name], up: sp.up[h.Name]}
		}
	}
	for name, c := range sp.conns {
		if keep[name] {
			continue
		}
		sp.cancel[name]()
		done := sp.done[name]
		sp.wg.Add(1)
		go func() {
			defer sp.wg.Done()
			<-done
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c.Close(ctx)
		}()
	}
	if hosts == nil {
		sp.wg.Wait()
	}
	r.speculated = sp
}

// wait waits for the closing of the connections not kept.
func (sp *speculation) wait() {
	if sp != nil {
		sp.wg.Wait()
	}
}

// targetsOf are the ssh targets of the evaluated hosts.
func (r *run) targetsOf(hosts []flake.Host) map[string]transport.Target {
	t := map[string]transport.Target{}
	for _, h := range hosts {
		t[h.Name] = r.conns[h.Name].Conn.Target
	}
	return t
}

// master is a speculative connection kept for a host: done is closed
// once it is up or failed, and then up says which.
type master struct {
	done <-chan struct{}
	up   *bool
}
