package fleet

import (
	"context"
	"fmt"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/keys"
	"github.com/skiffdeploy/skiff/internal/remote"
)

// Keys (deployment.keys) in a deploy:
//   - every selected host's keys are read on this machine right after the
//     evaluation (readKeys); a host whose keys cannot all be read is
//     refused then, before it is built, copied to or changed;
//   - pre-activation keys are written once the host's deploy lock is held,
//     before anything is activated (for switch, boot and test; never for
//     dry-activate);
//   - post-activation keys are written after a deploy ended Deployed (for
//     the supervised switch: confirmed and committed), never after a
//     rollback;
//   - a host already up to date gets all its keys at once (upToDateKeys):
//     keys change without the system changing (a rotated keyCommand).
// The contents stay in memory (keys.Key) and reach each host on the
// standard input of one ssh command (remote.Host.WriteKeys).

// writesKeys reports whether a deploy in mode m writes keys.
func (m Mode) writesKeys() bool { return m == Switch || m == Boot || m == Test }

// readKeys reads the keys of every selected host; it refuses the hosts
// whose keys cannot be read.
func (r *run) readKeys(ctx context.Context) {
	for _, h := range r.hosts {
		if len(h.Deployment.Keys) == 0 {
			continue
		}
		ks, err := keys.Read(ctx, r.Runner, h.Name, h.Deployment.Keys)
		if err != nil {
			if ctx.Err() != nil {
				err = interrupted(h.Name, "while reading its keys", unchanged)
			}
			r.refuse(h.Name, err)
			continue
		}
		r.mu.Lock()
		if r.keys == nil {
			r.keys = map[string][]keys.Key{}
		}
		r.keys[h.Name] = ks
		r.mu.Unlock()
	}
}

// writeKeys writes the host's keys of kind when (keys.PreActivation or
// keys.PostActivation), if it has any.
func (r *run) writeKeys(ctx context.Context, c *remote.Host, h flake.Host, when string) error {
	r.mu.Lock()
	ks := keys.At(r.keys[h.Name], when)
	r.mu.Unlock()
	if len(ks) == 0 {
		return nil
	}
	r.report(h.Name, PhaseActivate, "writing %d %s key(s): %s", len(ks), when, keyPaths(ks))
	if err := c.WriteKeys(ctx, ks); err != nil {
		return err
	}
	return nil
}

// preActivationKeys writes the host's pre-activation keys: nothing has
// been activated when it fails.
func (r *run) preActivationKeys(ctx context.Context, c *remote.Host, h flake.Host) error {
	if !r.Mode.writesKeys() {
		return nil
	}
	if err := r.writeKeys(ctx, c, h, keys.PreActivation); err != nil {
		if fe, ok := fault.As(err); ok {
			fe.Msg = "pre-activation keys: " + fe.Msg + "; nothing was activated"
			return fe
		}
		return fmt.Errorf("pre-activation keys: %w; nothing was activated", err)
	}
	return nil
}

// postActivationKeys writes the host's post-activation keys once its
// deploy ended Deployed (deferred by the activation, with its results): a
// failure to write them fails the host, whose new system stays.
func (r *run) postActivationKeys(ctx context.Context, c *remote.Host, h flake.Host, status *Status, err *error) {
	if *status != Deployed || *err != nil || !r.Mode.writesKeys() {
		return
	}
	if werr := r.writeKeys(ctx, c, h, keys.PostActivation); werr != nil {
		if fe, ok := fault.As(werr); ok {
			fe.Msg = "post-activation keys: " + fe.Msg + "; the new system is active"
			werr = fe
		}
		*status, *err = Failed, werr
	}
}

// upToDateKeys writes all the keys of a host that needs no activation.
func (r *run) upToDateKeys(ctx context.Context, c *remote.Host, h flake.Host) error {
	r.mu.Lock()
	ks := r.keys[h.Name]
	r.mu.Unlock()
	if len(ks) == 0 || !r.Mode.writesKeys() {
		return nil
	}
	r.report(h.Name, PhaseActivate, "up to date; writing its %d key(s): %s", len(ks), keyPaths(ks))
	return c.WriteKeys(ctx, ks)
}

func keyPaths(ks []keys.Key) string {
	s := ""
	for i, k := range ks {
		if i > 0 {
			s += ", "
		}
		s += k.Path()
	}
	return s
}
