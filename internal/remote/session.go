package remote

import (
	"bytes"
	"context"
	_ "embed" // the session agent
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// A Session is one long-running privileged ssh command on a host, the
// agent session.sh, which answers requests on its standard input: while a
// session is open, the host's deploy lock (Lock) and every privileged
// step (store query, profile, activation, units, journals, checks, keys,
// GC root) go through it instead of an ssh command each. Only the
// fresh-connection confirmation of package activate (transport.Exec.Fresh)
// and steps run as a login user other than root still open their own.
//
// The agent holds the deploy lock as its keeper: the lock lasts until
// Release or the end of the session; a session that dies (the deployer
// killed, the connection lost) leaves a lock that is stale once no
// activation supervisor runs, like the keeper's.
type Session struct {
	h   *Host
	ctx context.Context // the agent's ssh command runs under it
	in  *os.File        // the agent's standard input
	out *os.File        // its other end, which ssh reads
	wmu sync.Mutex      // orders the queue like the requests written
	// started: the agent's command has been started (start), or the
	// session ended before it was.
	started    bool
	inputEnded bool // endInput has ended the agent's input
	qmu        sync.Mutex
	queue      []*pending // requests whose reply has not ended yet, oldest first
	hello      *pending   // the agent's first answer, which nothing waits for
	done       chan struct{}
	err        error // why the session ended, once done is closed
	frame      frameWriter
}

// pending is a request waiting for its reply.
type pending struct {
	stream io.Writer // gets the output as it comes; nil: none
	r      reply
	ch     chan reply
}

// reply is the agent's answer to one request.
type reply struct {
	out  []byte   // "b" frames, decoded
	vals []string // "o" lines
	errs []string // "e" lines
	code int
}

//go:embed session.sh
var sessionFile string

// sessionScript is the agent: lock.sh's and ticker.sh's functions, then
// session.sh, without their comments.
var sessionScript = lockFuncs + TickerFuncs + withoutComments(sessionFile)

//go:embed ticker.sh
var tickerFile string

// TickerFuncs wake a host-side wait at growing intervals (ticker.sh,
// without its comments): the session agent's, while a streamed command
// runs, and the activation's follow (activate's status.sh).
var TickerFuncs = withoutComments(tickerFile)

// errSessionGone is returned for a request on a session that has ended.
var errSessionGone = errors.New("the host's session has ended")

// OpenSession opens the host's session; until Close, privileged steps
// go through it. The agent starts with the first requests sent on it,
// which travel in its command (see start); nothing waits for the host.
// It ends when ctx is done only through Close: an interrupted deploy
// still releases its lock and removes its GC root.
func (h *Host) OpenSession(ctx context.Context) (*Session, error) {
	// A pipe of the system, not io.Pipe: ssh reads it itself, so that
	// nothing of this process has to copy to it, and the session ends
	// (done) as soon as ssh does, connected or not.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%s: open a session: %w", h.Name, err)
	}
	s := &Session{h: h, in: pw, out: pr, done: make(chan struct{})}
	s.frame.s = s
	hello := &pending{ch: make(chan reply, 1)}
	s.queue = []*pending{hello}
	s.hello = hello
	s.ctx = context.WithoutCancel(ctx)
	h.sessMu.Lock()
	h.sess = s
	h.sessMu.Unlock()
	return s, nil
}

// maxFirst bounds the remote command that carries the first requests:
// sshd gives the whole command to the login shell as one argument, which
// Linux caps at 128 KiB (MAX_ARG_STRLEN), and the agent gets them as one
// argument again. The closure's paths of a server's system fit.
const maxFirst = 100 << 10

// start starts the agent with the longest run of reqs, from the first,
// that may travel in its command (none with secret input, the command at
// most maxFirst bytes once quoted), and returns how many it took. sshd
// lets no input through before the command has started, so a request on
// standard input costs a round trip more than one in the command. The
// caller holds wmu.
func (s *Session) start(reqs []string) int {
	s.started = true
	base := s.h.priv("sh", "-c", sessionScript, "skiff-session")
	n := 0
	for n < len(reqs) && !strings.HasPrefix(reqs[n], "stdin ") {
		n++
	}
	argv := base
	for ; n > 0; n-- {
		argv = append(base[:len(base):len(base)], strings.Join(reqs[:n], ""))
		if len(command.Join(argv)) <= maxFirst {
			break
		}
	}
	if n == 0 {
		argv = base
	}
	// The agent's first answer ("ready") is not waited for: a session
	// that could not start (sudo refusing) fails its first request with
	// the reason.
	go func() {
		_, err := s.h.exec(s.ctx, transport.Exec{Argv: argv, Stdin: s.out, Stream: &s.frame, StreamStderr: io.Discard})
		if err == nil {
			err = errSessionGone
		} else {
			err = s.h.explain("open a session", err)
		}
		s.end(err)
	}()
	return n
}

// Start starts the agent now, without requests: for a session whose
// first request comes later (a host waiting for an earlier wave), whose
// channel is then open and whose requests each cost one round trip.
func (s *Session) Start() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if !s.started {
		s.start(nil)
	}
}

// end records why the session ended and ends it.
func (s *Session) end(err error) {
	s.err = err
	_ = s.out.Close() // what is written from now on fails
	close(s.done)
}

// endInput ends the agent's input (its end once it has answered); a
// session never started ends at once. The caller holds wmu.
func (s *Session) endInput() {
	if s.inputEnded {
		return
	}
	s.inputEnded = true
	if !s.started {
		s.started = true
		s.end(errSessionGone)
		_ = s.in.Close()
		return
	}
	select {
	case <-s.done:
	default:
		// Traced like a request: with replies still awaited it travels
		// behind them; alone, the agent's end is a round trip of its
		// own.
		s.qmu.Lock()
		pending := len(s.queue) > 0
		s.qmu.Unlock()
		s.note(pending, "end of input")
	}
	_ = s.in.Close()
}

// LeaveSession leaves the open session to what was sent on it: its input
// ends, so the agent runs those requests and then ends (one round trip
// fewer than closing it afterwards), and later steps run beside it, each
// an ssh command of its own over the shared connection, instead of
// queueing behind requests that may wait long. Its owner still closes it,
// which waits for the agent's end.
func (h *Host) LeaveSession() {
	h.sessMu.Lock()
	s := h.sess
	h.sess = nil
	h.sessMu.Unlock()
	if s != nil {
		s.wmu.Lock()
		s.endInput()
		s.wmu.Unlock()
	}
}

// session is the host's open session, or nil.
func (h *Host) session() *Session {
	h.sessMu.Lock()
	defer h.sessMu.Unlock()
	if h.sess == nil {
		return nil
	}
	select {
	case <-h.sess.done:
		return nil
	default:
	}
	return h.sess
}

// Close ends the session: the agent ends at the end of its input (a lock
// not released is left, stale once nothing activates). It waits, bounded,
// for the agent to end.
func (s *Session) Close() {
	s.h.sessMu.Lock()
	if s.h.sess == s {
		s.h.sess = nil
	}
	s.h.sessMu.Unlock()
	s.wmu.Lock()
	s.endInput()
	s.wmu.Unlock()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
}

// request frames a request: its verb and the count of the lines of its
// arguments, then each argument as a line ":TEXT" and, for each newline
// in it, a line "+TEXT" that continues it (the agent reads them with the
// shell's read alone).
func request(verb string, args ...string) string {
	var lines []string
	for _, a := range args {
		for i, l := range strings.Split(a, "\n") {
			tag := "+"
			if i == 0 {
				tag = ":"
			}
			lines = append(lines, tag+l+"\n")
		}
	}
	return fmt.Sprintf("%s %d\n", verb, len(lines)) + strings.Join(lines, "")
}

// send writes requests and returns their pending replies, in order.
// notes trace them (one a step: a command and its input are one step). A
// step sent while the reply of another is still awaited is traced as
// "pipelined": it adds no round trip.
func (s *Session) send(notes []string, reqs []string, streams []io.Writer) ([]*pending, error) {
	return s.sendTagged("", notes, reqs, streams)
}

// sendTagged is send with the trace's tag for the first step given (see
// note); empty: "pipelined" or none, as send decides.
func (s *Session) sendTagged(tag string, notes []string, reqs []string, streams []io.Writer) ([]*pending, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	ps := make([]*pending, len(reqs))
	s.qmu.Lock()
	pipelined := false
	for _, p := range s.queue {
		pipelined = pipelined || p != s.hello
	}
	for i := range reqs {
		ps[i] = &pending{stream: streams[i], ch: make(chan reply, 1)}
		s.queue = append(s.queue, ps[i])
	}
	s.qmu.Unlock()
	for i, n := range notes {
		switch {
		case i == 0 && tag != "":
			s.h.Conn.Run.Note("session " + s.h.Name + " " + tag + ": " + n)
		default:
			s.note(pipelined || i > 0 || tag != "", n)
		}
	}
	rest := reqs
	if !s.started {
		rest = reqs[s.start(reqs):]
	}
	if len(rest) == 0 {
		return ps, nil
	}
	if _, err := io.WriteString(s.in, strings.Join(rest, "")); err != nil {
		return nil, errSessionGone
	}
	return ps, nil
}

// wait waits for p's reply.
func (s *Session) wait(ctx context.Context, p *pending) (reply, error) {
	select {
	case r := <-p.ch:
		return r, nil
	case <-s.done:
		// The reply may have arrived just before the end.
		select {
		case r := <-p.ch:
			return r, nil
		default:
		}
		return reply{}, s.err
	case <-ctx.Done():
		// The agent still answers it; the reply is dropped.
		return reply{}, ctx.Err()
	}
}

// exec runs argv (with the deploy's privileges) on the session, like an
// ssh command: the same result, a *command.Error for a non-zero exit.
// errSessionGone says the session had ended before.
func (s *Session) exec(ctx context.Context, argv []string, e transport.Exec) (command.Result, error) {
	r, err := s.do(ctx, argv, e)
	if err != nil {
		return command.Result{}, err
	}
	res, err := r.result(argv)
	if len(r.vals) > 0 {
		res.Stdout = append(res.Stdout, []byte(strings.Join(r.vals, "\n")+"\n")...)
	}
	return res, err
}

// result is r as an ssh command's result.
func (r reply) result(argv []string) (command.Result, error) {
	stderr := strings.Join(r.errs, "\n")
	if stderr != "" {
		stderr += "\n"
	}
	res := command.Result{Stdout: r.out, Stderr: []byte(stderr)}
	if r.code != 0 {
		return res, &command.Error{Argv: argv, ExitCode: r.code, Stderr: stderr, Err: fmt.Errorf("exit status %d", r.code)}
	}
	return res, nil
}

// do sends the request that runs argv and waits for its reply.
func (s *Session) do(ctx context.Context, argv []string, e transport.Exec) (reply, error) {
	reqs, streams, err := runRequests(argv, e)
	if err != nil {
		return reply{}, err
	}
	ps, err := s.send([]string{command.Join(argv)}, reqs, streams)
	if err != nil {
		return reply{}, err
	}
	return s.finish(ctx, argv, ps)
}

// runRequests are the requests that run argv as e says: its standard
// input first, when it has one.
func runRequests(argv []string, e transport.Exec) ([]string, []io.Writer, error) {
	var reqs []string
	var streams []io.Writer
	if e.Stdin != nil {
		in, err := io.ReadAll(e.Stdin)
		if err != nil {
			return nil, nil, err
		}
		reqs = append(reqs, request("stdin", base64.StdEncoding.EncodeToString(in)))
		streams = append(streams, nil)
	}
	verb := "run"
	if e.Stream != nil {
		verb = "stream"
	}
	reqs = append(reqs, request(verb, argv...))
	streams = append(streams, e.Stream)
	return reqs, streams, nil
}

// finish waits for the replies ps of the requests that run argv and
// returns the last.
func (s *Session) finish(ctx context.Context, argv []string, ps []*pending) (reply, error) {
	var r reply
	var err error
	for _, p := range ps {
		if r, err = s.wait(ctx, p); err != nil {
			if ctx.Err() != nil {
				return reply{}, &command.Error{Argv: argv, ExitCode: -1, Err: ctx.Err()}
			}
			return reply{}, err
		}
	}
	return r, nil
}

// note traces a request on the session (see send).
func (s *Session) note(pipelined bool, what string) {
	tag := ""
	if pipelined {
		tag = " (pipelined)"
	}
	s.h.Conn.Run.Note("session " + s.h.Name + tag + ": " + what)
}

// sessionArgv is the command of argv, made by priv, as the session runs
// it (the session already has the deploy's privileges).
func (h *Host) sessionArgv(argv []string) ([]string, bool) {
	if !h.Sudo() {
		return argv, true
	}
	return privArgv(argv)
}

// ErrNoSession is returned by Follow on a host without an open session.
var ErrNoSession = errors.New("no session open on the host")

// Follow runs argv with the deploy's privileges on the host's session,
// passing its output to out as it comes, and returns the lines it wrote
// on descriptor 3: a step that reports as it goes and ends with a result
// (the activation's log, then its state). ErrNoSession says there is no
// session to run it on.
func (h *Host) Follow(ctx context.Context, what string, out io.Writer, argv ...string) ([]string, error) {
	p, err := h.StartFollow(what, out, argv...)
	if err != nil {
		return nil, err
	}
	return p.Lines(ctx)
}

// lock takes the deploy lock with the agent as its keeper: it returns
// the agent's "skiff-lock: " lines and whether the lock is held by
// another.
func (s *Session) lock(ctx context.Context, owner LockOwner, brk string) ([]string, bool, error) {
	_, lines, held, err := s.lockThen(ctx, owner, brk, nil, nil)
	return lines, held, err
}

// lockThen sends the request that takes the deploy lock for owner and,
// behind it without waiting, reqs (their steps traced as notes), then
// waits for the lock's reply: lockReply's lines and held, and the pending
// replies of reqs, which the agent answers under the lock.
func (s *Session) lockThen(ctx context.Context, owner LockOwner, brk string, notes, reqs []string) ([]*pending, []string, bool, error) {
	note, req := lockRequest(owner, brk)
	ps, err := s.send(append([]string{note}, notes...), append([]string{req}, reqs...), make([]io.Writer, 1+len(reqs)))
	if err != nil {
		return nil, nil, false, err
	}
	r, err := s.wait(ctx, ps[0])
	if err != nil {
		return nil, nil, false, err
	}
	lines, held, err := lockReply(r)
	return ps[1:], lines, held, err
}

// lockRequest is the request that takes the deploy lock for owner, and
// its trace.
func lockRequest(owner LockOwner, brk string) (string, string) {
	args := []string{owner.User, owner.Machine, strconv.Itoa(owner.PID), owner.Since, brk, owner.Op}
	return "lock " + command.Join(args), request("lock", args...)
}

// lockReply reads the reply to a lock request: the agent's "skiff-lock: "
// lines and whether the lock is held by another.
func lockReply(r reply) ([]string, bool, error) {
	var lines []string
	for _, v := range r.vals {
		if rest, ok := strings.CutPrefix(v, "skiff-lock: "); ok {
			lines = append(lines, rest)
		}
	}
	switch r.code {
	case 0:
		return lines, false, nil
	case 3:
		return lines, true, nil
	}
	return nil, false, fmt.Errorf("the lock failed (exit %d): %s", r.code, strings.Join(r.errs, "; "))
}

// frameWriter reads the agent's framed lines into the pending replies.
type frameWriter struct {
	s   *Session
	buf []byte
}

func (w *frameWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

// frame is the tag and the text of one of the agent's lines: a line
// without a space is base64 output, as "b BASE64" is.
func frame(l string) (tag, text string) {
	tag, text, tagged := strings.Cut(l, " ")
	if !tagged {
		return "b", l
	}
	return tag, text
}

func (w *frameWriter) line(l string) {
	s := w.s
	s.qmu.Lock()
	if len(s.queue) == 0 {
		s.qmu.Unlock()
		return // not an answer to anything: ignore
	}
	p := s.queue[0]
	tag, text := frame(l)
	switch tag {
	case "b":
		b, err := base64.StdEncoding.DecodeString(text)
		if err == nil {
			p.r.out = append(p.r.out, b...)
			if p.stream != nil {
				s.qmu.Unlock()
				_, _ = p.stream.Write(b)
				return
			}
		}
	case "o":
		p.r.vals = append(p.r.vals, text)
	case "e":
		p.r.errs = append(p.r.errs, text)
	case "=":
		p.r.code, _ = strconv.Atoi(strings.TrimSpace(text))
		s.queue = s.queue[1:]
		p.ch <- p.r
	}
	s.qmu.Unlock()
}

// OpenProbe is the probe of a deploy on the host's session: it opens the
// session and reads the host's state (ReadState) as its first request,
// one ssh command in all, so that the later steps of the deploy (the
// lock, the store query) find the session open. When the session cannot
// start or the state cannot be read on it, the session is closed and the
// state is read by a command of its own, whose error says why as the
// probe's always did. The session returned (nil then) is the host's until
// Close.
func (h *Host) OpenProbe(ctx context.Context) (*Session, State, error) {
	argv, ok := h.sessionArgv(h.priv(stateArgv("")...))
	if !ok || (h.Sudo() && h.Password != "") {
		// With a sudo password the session's input is copied to ssh
		// behind the password line, and ssh failing to connect would
		// not end it: the probe is a command of its own, the session
		// opens once the host answered.
		st, err := h.ReadState(ctx)
		return nil, st, err
	}
	s, err := h.OpenSession(ctx)
	if err != nil {
		st, err := h.ReadState(ctx)
		return nil, st, err
	}
	res, err := s.exec(ctx, argv, transport.Exec{})
	if err == nil {
		st, err := h.stateOf(string(res.Stdout))
		if err != nil {
			s.Close()
			return nil, st, err
		}
		return s, st, nil
	}
	s.Close()
	if ctx.Err() != nil {
		return nil, State{}, ctx.Err()
	}
	if _, ok := fault.As(err); ok {
		// The host could not be reached, or sudo refused: said as the
		// probe says it (asking again would only wait again).
		return nil, State{}, err
	}
	st, err := h.ReadState(ctx)
	return nil, st, err
}
