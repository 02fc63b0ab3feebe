package remote

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
)

// LockedQuery is what LockQuery got: the deploy lock, then, read under it, the
// host's state (StateErr: why it could not be read) and what its store
// lacks of the closure.
type LockedQuery struct {
	Lock     *Lock
	State    State
	StateErr error
	Store    Store
	StoreErr error // the store query's failure
}

// LockQuery takes the deploy lock like Lock, then reads the state again
// like ReadState and queries the store like QueryStore. On the host's
// session the three requests are sent at once, before any reply is
// waited for: one round trip. The agent answers them in order, so the
// state and the store are read under the lock. When the lock is refused
// (the error is Lock's), the state and the store are discarded: the
// query changes nothing but root, which Unroot removes anyway. Without a
// session, one after the other.
func (h *Host) LockQuery(ctx context.Context, owner LockOwner, breakLock bool, paths []string, root Root) (LockedQuery, error) {
	var q LockedQuery
	s := h.session()
	stateArgv, ok1 := h.sessionArgv(h.priv("sh", "-c", stateScript))
	rargs, rerr := root.args()
	queryArgv, ok2 := h.sessionArgv(h.priv(append([]string{"sh", "-c", rooted(missingScript), "sh"}, rargs...)...))
	if s == nil || !ok1 || !ok2 || rerr != nil {
		return h.lockQuery(ctx, owner, breakLock, paths, root)
	}
	brk := "0"
	if breakLock {
		brk = "1"
	}
	lnote, lreq := lockRequest(owner, brk)
	notes := []string{lnote, command.Join(stateArgv), command.Join(queryArgv)}
	reqs := []string{lreq, request("run", stateArgv...)}
	// The paths are no secret: they may travel in the agent's command.
	in := strings.Join(paths, "\n") + "\n"
	reqs = append(reqs, request("input", base64.StdEncoding.EncodeToString([]byte(in))), request("run", queryArgv...))
	ps, err := s.send(notes, reqs, make([]io.Writer, len(reqs)))
	if errors.Is(err, errSessionGone) {
		return h.lockQuery(ctx, owner, breakLock, paths, root)
	}
	if err != nil {
		return q, err
	}
	r, err := s.wait(ctx, ps[0])
	var lines []string
	var held bool
	if err == nil {
		lines, held, err = lockReply(r)
	}
	if errors.Is(err, errSessionGone) {
		// The session has ended: the lock's keeper of its own.
		return h.lockQuery(ctx, owner, breakLock, paths, root)
	}
	if q.Lock, err = h.sessionLock(ctx, s, lines, held, err); err != nil {
		return q, err
	}
	// The state and the store: their replies, as ssh commands' results.
	result := func(argv []string, ps []*pending, what string) (string, error) {
		r, err := s.finish(ctx, argv, ps)
		if err == nil {
			var res command.Result
			res, err = r.result(argv)
			if err == nil {
				out := string(res.Stdout)
				if len(r.vals) > 0 {
					out += strings.Join(r.vals, "\n") + "\n"
				}
				return out, nil
			}
		}
		return "", h.explain(what, err)
	}
	out, err := result(stateArgv, ps[1:2], "read system state")
	if q.StateErr = err; err == nil {
		q.State, q.StateErr = parseState(out)
	}
	out, err = result(queryArgv, ps[2:], "query store paths")
	if q.StoreErr = err; err == nil {
		q.Store = parseStore(out)
	}
	return q, nil
}

// lockQuery is LockQuery one step after the other.
func (h *Host) lockQuery(ctx context.Context, owner LockOwner, breakLock bool, paths []string, root Root) (LockedQuery, error) {
	var q LockedQuery
	var err error
	if q.Lock, err = h.Lock(ctx, owner, breakLock); err != nil {
		return q, err
	}
	q.State, q.StateErr = h.ReadState(ctx)
	q.Store, q.StoreErr = h.QueryStore(ctx, paths, root)
	return q, nil
}
