package remote

import (
	"context"
	"encoding/base64"
	"errors"
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
// session the lock and the read (lockedQueryScript: the state and the
// store at once) are sent together, before any reply is waited for: one
// round trip. The agent answers them in order, so the state and the
// store are read under the lock. When the lock is refused
// (the error is Lock's), the state and the store are discarded: the
// query changes nothing but root, which Unroot removes anyway. Without a
// session, one after the other.
func (h *Host) LockQuery(ctx context.Context, owner LockOwner, breakLock bool, paths []string, root Root, base string) (LockedQuery, error) {
	var q LockedQuery
	s := h.session()
	rargs, rerr := queryArgs(root, base)
	queryArgv, ok := h.sessionArgv(h.priv(append([]string{"sh", "-c", lockedQueryScript, "sh"}, rargs...)...))
	if s == nil || !ok || rerr != nil {
		return h.lockQuery(ctx, owner, breakLock, paths, root, base)
	}
	brk := breakArg(breakLock)
	// The paths are no secret: they may travel in the agent's command.
	in := strings.Join(paths, "\n") + "\n"
	ps, lines, held, err := s.lockThen(ctx, owner, brk, []string{command.Join(queryArgv)},
		[]string{request("input", base64.StdEncoding.EncodeToString([]byte(in))), request("run", queryArgv...)})
	if errors.Is(err, errSessionGone) {
		// The session has ended: the lock's keeper of its own.
		return h.lockQuery(ctx, owner, breakLock, paths, root, base)
	}
	if q.Lock, err = h.sessionLock(ctx, s, lines, held, err); err != nil {
		return q, err
	}
	// The state (values) and the store (output): one reply, read as
	// the ssh commands' results were.
	r, err := s.finish(ctx, queryArgv, ps)
	var res command.Result
	if err == nil {
		res, err = r.result(queryArgv)
	}
	if err != nil {
		err = h.explain("read system state and query store paths", err)
		q.StateErr, q.StoreErr = err, err
		return q, nil
	}
	q.State, q.StateErr = h.stateOf(strings.Join(r.vals, "\n") + "\n")
	q.Store = parseStore(string(res.Stdout))
	return q, nil
}

// LockReadSystem takes the deploy lock like Lock, then reads the host's
// state and generations under it like ReadSystem: what a rollback needs
// before it chooses the generation to return to. On the host's session
// the two are sent together, before any reply is waited for: one round
// trip (a read under a refused lock is discarded; it changes nothing).
// A read that fails releases the lock again. Without a session, one after
// the other.
func (h *Host) LockReadSystem(ctx context.Context, owner LockOwner, breakLock bool) (*Lock, State, error) {
	s := h.session()
	argv, ok := h.sessionArgv(h.priv(stateArgv("gens")...))
	if s == nil || !ok {
		return h.lockReadSystem(ctx, owner, breakLock)
	}
	brk := breakArg(breakLock)
	ps, lines, held, err := s.lockThen(ctx, owner, brk, []string{command.Join(argv)}, []string{request("run", argv...)})
	if errors.Is(err, errSessionGone) {
		return h.lockReadSystem(ctx, owner, breakLock)
	}
	l, err := h.sessionLock(ctx, s, lines, held, err)
	if err != nil {
		return nil, State{}, err
	}
	r, err := s.finish(ctx, argv, ps)
	var res command.Result
	if err == nil {
		res, err = r.result(argv)
	}
	var st State
	if err == nil {
		st, err = h.stateOf(string(res.Stdout))
	}
	if err != nil {
		l.Release()
		return nil, State{}, h.explain("list generations", err)
	}
	return l, st, nil
}

// lockReadSystem is LockReadSystem one step after the other.
func (h *Host) lockReadSystem(ctx context.Context, owner LockOwner, breakLock bool) (*Lock, State, error) {
	l, err := h.Lock(ctx, owner, breakLock)
	if err != nil {
		return nil, State{}, err
	}
	st, err := h.ReadSystem(ctx)
	if err != nil {
		l.Release()
		return nil, State{}, err
	}
	return l, st, nil
}

// lockQuery is LockQuery one step after the other.
func (h *Host) lockQuery(ctx context.Context, owner LockOwner, breakLock bool, paths []string, root Root, base string) (LockedQuery, error) {
	var q LockedQuery
	var err error
	if q.Lock, err = h.Lock(ctx, owner, breakLock); err != nil {
		return q, err
	}
	q.State, q.StateErr = h.ReadState(ctx)
	q.Store, q.StoreErr = h.QueryStore(ctx, paths, root, base)
	return q, nil
}

// lockedQueryScript reads the host's state (stateScript, its lines on
// descriptor 3, the session's values) while it queries the store
// (missingScript, on standard output, with its arguments and input): the
// two are independent, and a host has more than one core to run them on.
// It ends once both have.
var lockedQueryScript = "trap wait EXIT\nsh -c " + command.Quote(stateScript) + " sh >&3 2>/dev/null &\n" + rooted(missingScript)
