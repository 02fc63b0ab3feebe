package remote

import (
	"context"
	"errors"
	"io"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// A Pending is a step sent on the host's session whose reply has not been
// waited for yet: the steps sent after it, before Wait, travel in the
// same round trip (the agent answers them in order).
type Pending struct {
	h    *Host
	s    *Session
	what string
	argv []string
	ps   []*pending
	res  command.Result // without a session: the step's result, already there
	err  error
}

// StartPriv sends argv, with the deploy's privileges, on the host's
// session without waiting for its reply (see Pending). Without a session
// it runs it at once, like RunPriv.
func (h *Host) StartPriv(ctx context.Context, what string, argv ...string) *Pending {
	return h.start(ctx, what, transport.Exec{Argv: h.priv(argv...)})
}

// StartUnroot is Unroot sent like StartPriv.
func (h *Host) StartUnroot(ctx context.Context, r Root) *Pending {
	if r == (Root{}) {
		return &Pending{}
	}
	args, err := r.args()
	if err != nil {
		return &Pending{err: err}
	}
	return h.start(ctx, "remove the GC root "+r.Link(), transport.Exec{Argv: h.priv("sh", "-c", unrootScript, "sh", args[0], args[2])})
}

func (h *Host) start(ctx context.Context, what string, e transport.Exec) *Pending {
	if s := h.session(); s != nil && e.StreamStderr == nil && !e.Fresh {
		if p, sent := h.sendOn(s, "", what, e); sent {
			return p
		}
		// Not a session's step, or the session has ended: a command of
		// its own.
	}
	p := &Pending{}
	p.res, p.err = h.run(ctx, what, e)
	return p
}

// sendOn sends e's argv as a step on session s, traced with tag (see
// Session.sendTagged); sent is false when the step cannot go there (an
// argv the session does not run, or the session has ended).
func (h *Host) sendOn(s *Session, tag, what string, e transport.Exec) (p *Pending, sent bool) {
	argv, ok := h.sessionArgv(e.Argv)
	if !ok {
		return nil, false
	}
	reqs, streams, err := runRequests(argv, e)
	if err != nil {
		return &Pending{err: err}, true
	}
	ps, err := s.sendTagged(tag, []string{command.Join(argv)}, reqs, streams)
	if err != nil {
		return nil, false
	}
	return &Pending{h: h, s: s, what: what, argv: argv, ps: ps}, true
}

// StartAlongside sends argv, privileged like StartPriv, on the host's
// session while another command of the deployer is under way (the steps
// sent after it on the session follow it): it adds no round trip of its
// own, and the trace says "(alongside)". Without a session it runs
// nothing and returns nil.
func (h *Host) StartAlongside(what string, argv ...string) *Pending {
	s := h.session()
	if s == nil {
		return nil
	}
	p, sent := h.sendOn(s, "(alongside)", what, transport.Exec{Argv: h.priv(argv...)})
	if !sent || p.err != nil {
		return nil
	}
	return p
}

// Wait waits for the step's result, like RunPriv's.
func (p *Pending) Wait(ctx context.Context) (command.Result, error) {
	if p.s == nil {
		return p.res, p.err
	}
	r, err := p.s.finish(ctx, p.argv, p.ps)
	var res command.Result
	if err == nil {
		res, err = r.result(p.argv)
		if len(r.vals) > 0 {
			res.Stdout = append(res.Stdout, []byte(strings.Join(r.vals, "\n")+"\n")...)
		}
	}
	if err != nil {
		return res, p.h.explain(p.what, err)
	}
	return res, nil
}

// Sent reports whether the step went on the host's session (and Wait
// waits for its reply) rather than running already.
func (p *Pending) Sent() bool { return p.s != nil }

// StartFollow sends what Follow runs without waiting for its reply (see
// Pending); Lines waits for it. ErrNoSession says there is no session.
func (h *Host) StartFollow(what string, out io.Writer, argv ...string) (*Pending, error) {
	s := h.session()
	if s == nil {
		return nil, ErrNoSession
	}
	reqs, streams, err := runRequests(argv, transport.Exec{Argv: argv, Stream: out})
	if err != nil {
		return nil, err
	}
	ps, err := s.send([]string{command.Join(argv)}, reqs, streams)
	if err != nil {
		return nil, ErrNoSession
	}
	return &Pending{h: h, s: s, what: what, argv: argv, ps: ps}, nil
}

// Lines waits for a step sent by StartFollow and returns the lines it
// wrote on descriptor 3, like Follow.
func (p *Pending) Lines(ctx context.Context) ([]string, error) {
	r, err := p.s.finish(ctx, p.argv, p.ps)
	if errors.Is(err, errSessionGone) {
		return nil, ErrNoSession
	}
	if err == nil {
		_, err = r.result(p.argv)
	}
	if err != nil {
		return r.vals, p.h.explain(p.what, err)
	}
	return r.vals, nil
}

// InSession reports whether the host's session is open: steps sent with
// StartPriv then go at once, in one round trip.
func (h *Host) InSession() bool { return h.session() != nil }

// StartReadBoot sends ReadBoot (not fresh) like StartPriv; the function
// returned waits for its answer.
func (h *Host) StartReadBoot(ctx context.Context) func(context.Context) (Boot, error) {
	p := h.start(ctx, "read boot state", transport.Exec{Argv: []string{"sh", "-c", bootScript}})
	return func(ctx context.Context) (Boot, error) {
		res, err := p.Wait(ctx)
		if err != nil {
			return Boot{}, err
		}
		return parseBoot(string(res.Stdout)), nil
	}
}
