package cli

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/fleet"
	"github.com/skiffdeploy/skiff/internal/ui"
)

func TestRedactString(t *testing.T) {
	for _, tc := range []struct {
		secret, in, want string
	}{
		{"hunter2-ab", "error: getting status of '/home/deploy/hunter2-ab': no such file", "error: getting status of '/home/deploy/[redacted]': no such file"},
		{"hunter2-ab", "hunter2-ab hunter2-ab", "[redacted] [redacted]"},
		{"hunter2-ab", "nothing secret", "nothing secret"},
		{`pa"ss\w`, `{"error":"path pa\"ss\\w"}`, `{"error":"path [redacted]"}`},    // as JSON writes it
		{`pa"ss\w`, `unexpected link "pa\"ss\\w"`, `unexpected link "[redacted]"`},  // as %q writes it
		{"it's", `+ ssh web1 -- 'echo it'\''s'`, `+ ssh web1 -- 'echo [redacted]'`}, // as the trace quotes it
		{"a<b", `"a\u003cb"`, `"[redacted]"`},                                       // JSON's HTML escaping
	} {
		if got := newRedactor(tc.secret).String(tc.in); got != tc.want {
			t.Errorf("secret %q: %q redacted is %q, want %q", tc.secret, tc.in, got, tc.want)
		}
	}
	var none *redactor // no --ask-sudo-password
	if got := none.String("hunter2"); got != "hunter2" {
		t.Errorf("a nil redactor changed %q", got)
	}
	if newRedactor("") != nil {
		t.Error("an empty secret makes a redactor")
	}
}

func TestRedactError(t *testing.T) {
	red := newRedactor("hunter2-ab")
	ce := &command.Error{Argv: []string{"ssh"}, ExitCode: 123, Stderr: "error: getting status of '/home/deploy/hunter2-ab'\n"}
	fe := fault.Wrap(ce, "web1", fault.Nix, "retype hunter2-ab", "query store paths: %v", ce)
	for _, in := range []error{fe, fmt.Errorf("web1: wrapped: %w", fe)} {
		got := red.Error(in)
		if strings.Contains(got.Error(), "hunter2") {
			t.Errorf("Error() = %q", got.Error())
		}
		f, ok := fault.As(got)
		if !ok {
			t.Fatalf("%v: the fault is lost", got)
		}
		if f.Host != "web1" || f.Class != fault.Nix || f.Msg != "query store paths: ssh: exit status 123: error: getting status of '/home/deploy/[redacted]'" || f.Hint != "retype [redacted]" {
			t.Errorf("fault %+v", f)
		}
		var leaked *command.Error
		if errors.As(got, &leaked) {
			t.Errorf("the redacted error still carries the command's stderr %q", leaked.Stderr)
		}
	}
	// An error without the secret is kept as it is (its chain too).
	clean := fault.Wrap(plainErr("x"), "web1", fault.SSH, "hint", "msg")
	if got := red.Error(clean); got != error(clean) {
		t.Errorf("a clean error was replaced: %v", got)
	}
	if got := red.Error(exitError{3}); got != error(exitError{3}) {
		t.Errorf("exit error replaced: %v", got)
	}
	if red.Error(nil) != nil {
		t.Error("nil error")
	}
}

type plainErr string

func (c plainErr) Error() string { return string(c) }

// TestRedactedResultsLeaveNoTrace follows a run's results through every
// place they leave skiff: the summary table, the JSON summary, the
// "skiff: error:" lines and the history record.
func TestRedactedResultsLeaveNoTrace(t *testing.T) {
	const pw = "hunter2-ab"
	red := newRedactor(pw)
	results := red.Results([]fleet.Result{
		{Host: "web1", Status: fleet.Failed, Mode: fleet.Switch, Note: "note " + pw, FailedUnits: []string{pw + ".service"},
			Err: fault.Wrap(errors.New("stderr "+pw), "web1", fault.Nix, "hint "+pw, "query store paths: %s", pw)},
		{Host: "web2", Status: fleet.Failed, Mode: fleet.Switch, Err: errors.New("web2: plain " + pw)},
		{Host: "web3", Status: fleet.Deployed, Mode: fleet.Switch},
	})
	var out bytes.Buffer
	ui.Summary(&out, results)
	(&ui.JSON{W: &out}).Summary(results, 3)
	for _, r := range results {
		if r.Err != nil {
			printError(&out, r.Err)
		}
	}
	run := historyRun(time.Now(), time.Now(), "deploy", flake.Ref{URL: "."}, "switch", results, 3)
	fmt.Fprintf(&out, "%+v", run)
	if strings.Contains(out.String(), pw) {
		t.Errorf("the secret is shown or recorded:\n%s", out.String())
	}
	for _, want := range []string{"query store paths: [redacted]", "hint [redacted]", "web2: plain [redacted]", `"error_class":"nix"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if got := results[0].Class(); got != fault.Nix {
		t.Errorf("class %q, want nix", got)
	}
}

func TestRedactingWriter(t *testing.T) {
	red := newRedactor("hunter2-ab")
	for _, tc := range []struct {
		writes []string
		want   string
	}{
		{[]string{"+ ssh web1 -- hunter2-ab\n"}, "+ ssh web1 -- [redacted]\n"},
		{[]string{"a hun", "ter2-", "ab b\n"}, "a [redacted] b\n"},                 // split across writes
		{[]string{"a hun", "gry\n"}, "a hungry\n"},                                 // a beginning that was not the secret
		{[]string{"[y/N] "}, "[y/N] "},                                             // nothing held back
		{[]string{"ends with hunt"}, "ends with hunt"},                             // written by Flush
		{[]string{"h", "u", "n", "t", "e", "r", "2", "-", "a", "b"}, "[redacted]"}, // byte by byte
	} {
		var buf bytes.Buffer
		w := red.Writer(&buf)
		for _, s := range tc.writes {
			if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
				t.Errorf("Write(%q) = %d, %v", s, n, err)
			}
		}
		w.Flush()
		if buf.String() != tc.want {
			t.Errorf("writes %q gave %q, want %q", tc.writes, buf.String(), tc.want)
		}
	}
}

// recorder is a live view: a reporter that pauses.
type recorder struct {
	mu     sync.Mutex
	events []string
	paused int
}

func (r *recorder) Event(e fleet.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e.Msg)
}
func (r *recorder) Pause()  { r.paused++ }
func (r *recorder) Resume() { r.paused-- }

func TestRedactingReporter(t *testing.T) {
	rec := &recorder{}
	rep := newRedactor("hunter2-ab").Reporter(rec)
	rep.Event(fleet.Event{Host: "web1", Phase: fleet.PhaseConnect, Msg: "failed: hunter2-ab"})
	rep.Event(fleet.Event{Host: "web1", Phase: fleet.PhaseActivate, Msg: "output hunter2-ab", Output: true})
	if d := cmp.Diff([]string{"failed: [redacted]", "output [redacted]"}, rec.events); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
	p, ok := rep.(pauser)
	if !ok {
		t.Fatal("the redacting reporter hides the live view's Pause")
	}
	p.Pause()
	if rec.paused != 1 {
		t.Error("Pause did not reach the live view")
	}
	var none *redactor
	if none.Reporter(rec) != fleet.Reporter(rec) {
		t.Error("a nil redactor wraps the reporter")
	}
}
