package fleet

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/remote"
)

// What an interrupt (Ctrl-C: the run's context cancelled) reports, by where
// it lands in a host's pipeline:
//
//   - before or during the build, while connecting, before the copy: the
//     host is Interrupted, "nothing on the host changed";
//   - while --gc makes room: Interrupted, old generations may be gone,
//     nothing was copied or activated;
//   - during the copy: Interrupted, nothing was activated, the host still
//     runs what it ran, the paths copied so far stay in its store until a
//     garbage collection. The copy's amount is reported as 0: which of the
//     planned paths arrived is unknown without another round trip;
//   - after the copy, before activation: Interrupted, nothing activated,
//     the copied paths (counted) stay in the store;
//   - during activation: the activation goes on (stopping it half-way
//     would leave the host half-done). skiff says at once what it waits for
//     and for how long at most, then reports how it ended (Deployed or
//     RolledBack, with a note).
//
// In every case skiff exits 130.

// interruptHint is the hint of an interrupted host.
func interruptHint(host string) string {
	return fmt.Sprintf("deploy again to finish (\"skiff deploy %s\" with the same flags)", host)
}

// interrupted is the error of a host whose deploy the interrupt stopped
// where: what state the host is in.
func interrupted(host, where, state string) error {
	return fault.New(host, fault.Interrupted, interruptHint(host), "interrupted %s; %s", where, state)
}

// unchanged is the state of a host the interrupt stopped before anything
// was sent to it.
const unchanged = "nothing on the host changed"

// running names what a host still runs, for an interrupted deploy.
func running(st remote.State) string {
	switch {
	case st.Generation > 0 && st.Current == st.Profile:
		return fmt.Sprintf("generation %d", st.Generation)
	case st.Current != "" && st.Generation > 0:
		return fmt.Sprintf("%s (profile at generation %d)", st.Current, st.Generation)
	case st.Current != "":
		return st.Current
	}
	return "no deployed system"
}

// activationWait is what skiff waits for when an interrupt lands during a
// host's activation; the activation paths set it as they go.
type activationWait struct{ what atomic.Pointer[string] }

func (w *activationWait) set(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	w.what.Store(&s)
}

func (w *activationWait) String() string {
	if s := w.what.Load(); s != nil {
		return *s
	}
	return "waiting for the activation to end"
}

// waitOf is host's activationWait.
func (r *run) waitOf(host string) *activationWait {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waits == nil {
		r.waits = map[string]*activationWait{}
	}
	w := r.waits[host]
	if w == nil {
		w = &activationWait{}
		r.waits[host] = w
	}
	return w
}

// announceInterrupt reports, as soon as ctx is cancelled (and only if it is
// before stop is called), that the host's activation goes on and what skiff
// waits for.
func (r *run) announceInterrupt(ctx context.Context, host string) (stop func() bool) {
	w := r.waitOf(host)
	return context.AfterFunc(ctx, func() {
		r.report(host, PhaseActivate, "interrupted: the activation has started and finishes anyway (stopped half-way, it would leave the host half-done): %s; then skiff reports how it ended", w)
	})
}
