package remote

import (
	"bufio"
	"context"
	_ "embed" // the lock's host-side functions
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// LockDir is the host's deploy lock.
const LockDir = "/run/skiff/lock"

// LockOwner says who holds a host's deploy lock.
type LockOwner struct {
	User    string
	Machine string
	PID     int
	Since   string // RFC 3339
	// Op is what holds the lock: "" for a deploy (or rollback), "gc"
	// for skiff gc, "upload-keys" for skiff upload-keys; a deploy waits
	// for those two (Brief).
	Op string
}

// OpGC is the LockOwner.Op of skiff gc.
const OpGC = "gc"

// OpUploadKeys is the LockOwner.Op of skiff upload-keys.
const OpUploadKeys = "upload-keys"

// Brief reports whether the holder is a short operation that a deploy
// waits for rather than refuses: skiff gc or skiff upload-keys.
func (o LockOwner) Brief() bool { return o.Op == OpGC || o.Op == OpUploadKeys }

func (o LockOwner) String() string {
	s := fmt.Sprintf("%s@%s (pid %s", orDash(o.User), orDash(o.Machine), orDash(strconv.Itoa(o.PID)))

	if o.Since != "" {
		s += ", since " + o.Since
	}
	return s + ")"
}

func orDash(s string) string {
	if s == "" || s == "0" {
		return "?"
	}
	return s
}

// lockScript takes the lock and keeps it while its standard input stays
// open: its shell is the "keeper" whose pid the owner file records. A
// lock whose keeper is gone and whose activation supervisors have all
// ended is stale and taken over; $5 = 1 breaks a live one. Reading
// "release" removes the lock; end of input (the deployer vanished) leaves
// it, to be found stale. $6, when set, is what holds the lock (gc).
var lockScript = lockFuncs + `set -u
skiff_lock "$@" || exit
read -r cmd || cmd=
if [ "$cmd" = release ]; then skiff_unlock; fi`

// lockFuncs takes and removes the lock (lock.sh), for the keeper above
// and the session agent (session.sh).
//
//go:embed lock.sh
var lockFile string

var lockFuncs = withoutComments(lockFile)

// Lock is a held deploy lock.
type Lock struct {
	h       *Host
	session *Session // the session keeping the lock; nil: a keeper of its own
	in      io.WriteCloser
	done    chan error
	once    sync.Once
	// Took is how the lock was taken: "" (it was free), "stale" or
	// "broken", with the previous owner in Previous.
	Took     string
	Previous LockOwner
}

// Locked is the error class of a host whose deploy lock another deploy
// holds.
const Locked fault.Class = "locked"

// HeldError is the cause of a Locked fault: who holds the lock.
type HeldError struct{ Holder LockOwner }

func (e *HeldError) Error() string { return "the deploy lock is held by " + e.Holder.String() }

// Lock takes the host's deploy lock for owner, refusing (class Locked,
// naming the holder) when a live deploy holds it, unless breakLock. The lock lasts until Release or until the deployer's
// session ends; a lock left by a vanished deployer is taken over once no
// activation supervisor runs on the host.
//
// While a session is open, its agent keeps the lock, until Release or
// the end of the session.
// breakArg is lock.sh's BREAK argument: "1" breaks a lock that another
// holds (--break-lock).
func breakArg(breakLock bool) string {
	if breakLock {
		return "1"
	}
	return "0"
}

func (h *Host) Lock(ctx context.Context, owner LockOwner, breakLock bool) (*Lock, error) {
	brk := breakArg(breakLock)
	if s := h.session(); s != nil {
		lines, held, err := s.lock(ctx, owner, brk)
		if !errors.Is(err, errSessionGone) {
			return h.sessionLock(ctx, s, lines, held, err)
		}
	}
	// A pipe of the system (ssh reads it itself): a keeper whose ssh
	// ends, connected or not, ends at once.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%s: take the deploy lock: %w", h.Name, err)
	}
	lines := make(chan string, 8)
	w := &lockLines{ch: lines}
	l := &Lock{h: h, in: pw, done: make(chan error, 1)}
	argv := h.priv("sh", "-c", lockScript, "skiff-lock", owner.User, owner.Machine, strconv.Itoa(owner.PID), owner.Since, brk, owner.Op)
	// The keeper outlives ctx's cancellation until Release, so that an
	// interrupted deploy still releases the lock.
	kctx := context.WithoutCancel(ctx)
	go func() {
		_, err := h.exec(kctx, transport.Exec{Argv: argv, Stdin: pr, Stream: w})
		_ = pr.Close()
		l.done <- err
		close(l.done)
	}()
	for {
		select {
		case line := <-lines:
			verb, rest, _ := strings.Cut(line, " ")
			switch verb {
			case "locked":
				return l, nil
			case "stale", "broken":
				l.Took, l.Previous = verb, parseOwner(rest)
			case "held":
				_ = pw.Close()
				<-l.done
				return nil, h.heldError(parseOwner(rest))
			}
		case err := <-l.done:
			_ = pw.Close()
			if err == nil {
				err = errors.New("the lock script ended without an answer")
			}
			if _, ok := fault.As(err); ok {
				return nil, err
			}
			return nil, fmt.Errorf("%s: take the deploy lock %s: %w", h.Name, LockDir, err)
		case <-ctx.Done():
			_ = pw.Close()
			return nil, ctx.Err()
		}
	}
}

// sessionLock is the lock the session s took, from its answer.
func (h *Host) sessionLock(ctx context.Context, s *Session, lines []string, held bool, err error) (*Lock, error) {
	if err != nil {
		if _, ok := fault.As(err); ok || ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s: take the deploy lock %s: %w", h.Name, LockDir, err)
	}
	l := &Lock{h: h, session: s}
	for _, line := range lines {
		verb, rest, _ := strings.Cut(line, " ")
		switch verb {
		case "stale", "broken":
			l.Took, l.Previous = verb, parseOwner(rest)
		case "held":
			if held {
				return nil, h.heldError(parseOwner(rest))
			}
		}
	}
	return l, nil
}

// heldError is the Locked fault of a lock held by holder.
func (h *Host) heldError(holder LockOwner) error {
	who := "another deploy"
	if holder.Op != "" {
		who = "skiff " + holder.Op
	}
	return fault.Wrap(&HeldError{holder}, h.Name, Locked,
		fmt.Sprintf("wait for that %s to finish; if it is gone and its lock is wrong, run again with --break-lock (the lock is %s on the host)", strings.TrimPrefix(who, "another "), LockDir),
		"%s holds the host's deploy lock: %s", who, holder)
}

// Release gives the lock back and waits (bounded) for the keeper to end.
func (l *Lock) Release() {
	if l.session != nil {
		l.StartRelease().WaitReleased()
		return
	}
	l.once.Do(func() {
		go func() {
			_, _ = io.WriteString(l.in, "release\n")
			_ = l.in.Close()
		}()
		select {
		case <-l.done:
		case <-time.After(releaseWait):
		}
	})
}

// releaseWait bounds the wait for a release: a host that does not answer
// keeps the lock only until the end of the keeper (or the session's
// agent) leaves it stale.
const releaseWait = 10 * time.Second

func parseOwner(s string) LockOwner {
	var o LockOwner
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "user":
			o.User = v
		case "machine":
			o.Machine = v
		case "pid":
			o.PID, _ = strconv.Atoi(v)
		case "since":
			o.Since = v
		case "op":
			o.Op = v
		}
	}
	return o
}

// lockLines passes the lock script's "skiff-lock: " lines on.
type lockLines struct {
	mu  sync.Mutex
	buf []byte
	ch  chan string
}

func (w *lockLines) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	sc := bufio.NewScanner(strings.NewReader(string(w.buf)))
	consumed := 0
	for sc.Scan() {
		line := sc.Text()
		if consumed+len(line) >= len(w.buf) { // no newline yet
			break
		}
		consumed += len(line) + 1
		if rest, ok := strings.CutPrefix(line, "skiff-lock: "); ok {
			select {
			case w.ch <- rest:
			default:
			}
		}
	}
	w.buf = w.buf[consumed:]
	return len(p), nil
}
