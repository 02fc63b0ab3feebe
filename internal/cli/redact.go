package cli

import (
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/fleet"
)

// redacted replaces a secret in everything skiff shows or records.
const redacted = "[redacted]"

// redactor removes a secret (the sudo password) from what leaves skiff:
// the events every renderer shows (live, plain, JSON), the results behind
// the summary table, the JSON summary, the "skiff: error:" lines and the
// history, and the text written to stderr (the -x trace, the plan). The
// password never reaches any of them by design (internal/remote/sudo.go);
// this is the second line, drawn once, where a run's output leaves the
// command (runDeploy). A nil redactor (no secret) changes nothing.
type redactor struct {
	forms []string // the secret as it may be written: plain, JSON, Go- and shell-quoted; longest first
}

func newRedactor(secret string) *redactor {
	if secret == "" {
		return nil
	}
	forms := []string{secret}
	if b, err := json.Marshal(secret); err == nil {
		forms = append(forms, string(b[1:len(b)-1]))
	}
	q := strconv.Quote(secret)
	forms = append(forms, q[1:len(q)-1], strings.ReplaceAll(secret, "'", `'\''`))
	slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
	return &redactor{forms: slices.Compact(forms)}
}

// String is s with every form of the secret replaced by redacted.
func (r *redactor) String(s string) string {
	if r == nil {
		return s
	}
	for _, f := range r.forms {
		s = strings.ReplaceAll(s, f, redacted)
	}
	return s
}

func (r *redactor) leaks(s string) bool { return r.String(s) != s }

// Error is err when none of its texts (its message, and the message and
// hint of the fault it carries) holds the secret; otherwise an error with
// those texts redacted that keeps the fault's host and class, and nothing
// else of the original chain.
func (r *redactor) Error(err error) error {
	if r == nil || err == nil {
		return err
	}
	fe, isFault := fault.As(err)
	if !r.leaks(err.Error()) && (!isFault || !r.leaks(fe.Msg) && !r.leaks(fe.Hint)) {
		return err
	}
	red := &redactedError{msg: r.String(err.Error())}
	if isFault {
		red.fault = &fault.Error{Host: fe.Host, Class: fe.Class, Msg: r.String(fe.Msg), Hint: r.String(fe.Hint)}
	}
	return red
}

// redactedError is an error whose texts were redacted.
type redactedError struct {
	msg   string
	fault *fault.Error
}

func (e *redactedError) Error() string { return e.msg }

func (e *redactedError) Unwrap() error {
	if e.fault == nil {
		return nil
	}
	return e.fault
}

// Results are results with their errors, notes and unit names redacted.
func (r *redactor) Results(results []fleet.Result) []fleet.Result {
	if r == nil {
		return results
	}
	out := make([]fleet.Result, len(results))
	for i, res := range results {
		res.Err = r.Error(res.Err)
		res.Note = r.String(res.Note)
		if res.FailedUnits != nil {
			units := make([]string, len(res.FailedUnits))
			for j, u := range res.FailedUnits {
				units[j] = r.String(u)
			}
			res.FailedUnits = units
		}
		out[i] = res
	}
	return out
}

// Reporter is rep receiving events with their messages redacted.
func (r *redactor) Reporter(rep fleet.Reporter) fleet.Reporter {
	if r == nil {
		return rep
	}
	return redactingReporter{rep: rep, r: r}
}

type redactingReporter struct {
	rep fleet.Reporter
	r   *redactor
}

func (x redactingReporter) Event(e fleet.Event) {
	e.Msg = x.r.String(e.Msg)
	x.rep.Event(e)
}

// Pause and Resume reach a live view underneath (deploy --plan asks a
// question while it is paused).
func (x redactingReporter) Pause() {
	if p, ok := x.rep.(pauser); ok {
		p.Pause()
	}
}

func (x redactingReporter) Resume() {
	if p, ok := x.rep.(pauser); ok {
		p.Resume()
	}
}

// globals is g with its stderr redacted (the -x trace, the plan, the
// "skiff: error:" lines), and the function that flushes it at the end.
func (r *redactor) globals(g *globals) (*globals, func()) {
	if r == nil {
		return g, func() {}
	}
	w := r.Writer(g.stderr)
	c := *g
	c.stderr = w
	return &c, w.Flush
}

// Writer is w with the secret redacted from what is written to it. A
// write that ends with the beginning of the secret holds that part back
// until the next write shows whether the secret follows (Flush writes it).
func (r *redactor) Writer(w io.Writer) *redactingWriter {
	return &redactingWriter{w: w, r: r}
}

type redactingWriter struct {
	mu      sync.Mutex
	w       io.Writer
	r       *redactor
	pending string
}

func (x *redactingWriter) Write(p []byte) (int, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.r == nil {
		return x.w.Write(p)
	}
	s := x.r.String(x.pending + string(p))
	keep := x.r.partial(s)
	x.pending = s[len(s)-keep:]
	if _, err := io.WriteString(x.w, s[:len(s)-keep]); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes what a write held back.
func (x *redactingWriter) Flush() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.pending != "" {
		_, _ = io.WriteString(x.w, x.pending)
		x.pending = ""
	}
}

// partial is the length of the longest end of s that begins a form of the
// secret (0 when none does).
func (r *redactor) partial(s string) int {
	longest := 0
	for _, f := range r.forms {
		for k := min(len(f)-1, len(s)); k > longest; k-- {
			if strings.HasSuffix(s, f[:k]) {
				longest = k
				break
			}
		}
	}
	return longest
}
