package ui

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/vt"
	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/fleet"
)

var update = flag.Bool("update", false, "rewrite the golden files of the live view under testdata/live")

const storePath = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-web3-24.05"

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

func ev(sec float64, host string, phase fleet.Phase, msg string) fleet.Event {
	return fleet.Event{Time: at(sec), Host: host, Phase: phase, Msg: msg}
}

func done(sec float64, host string, st fleet.Status, msg string) fleet.Event {
	return fleet.Event{Time: at(sec), Host: host, Phase: fleet.PhaseDone, Status: st, Msg: msg}
}

func progress(sec float64, host string, d, total int64) fleet.Event {
	return fleet.Event{Time: at(sec), Host: host, Phase: fleet.PhaseCopy, Progress: true, Done: d, Total: total}
}

// supervised is the activation message whose wrapping once filled the
// screen with stacked frames.
func supervised(host string) string {
	return fmt.Sprintf("switch-to-configuration test under a supervisor (/run/skiff/act-1764636000-%s); unless confirmed within 30s the host returns to generation 9 (%s)", host, storePath)
}

// started is a run evaluated and built, whose hosts are connected.
func started(names ...string) []fleet.Event {
	es := []fleet.Event{
		ev(0, "", fleet.PhaseEval, "evaluating every host of the flake"),
		ev(1, "", fleet.PhaseEval, fmt.Sprintf("evaluated %d host(s) in 1s", len(names))),
		ev(1, "", fleet.PhaseBuild, "building 3 system(s)"),
	}
	for _, n := range names {
		es = append(es, ev(1, n, fleet.PhaseConnect, "connecting to root@"+n),
			ev(1.2, n, fleet.PhaseConnect, "connected in 120ms; running generation 9"))
	}
	return append(es, ev(2.3, "", fleet.PhaseBuild, "built in 1.299s"))
}

var six = []string{"db1", "db2", "web1", "web2", "web3", "web4"}

// liveCases are states of a run, each the events that led to it and the
// time it is drawn at.
var liveCases = []struct {
	name   string
	events []fleet.Event
	now    float64
}{
	{"evaluating", []fleet.Event{ev(0, "", fleet.PhaseEval, "evaluating every host of the flake")}, 0.4},
	{"building", started(six...)[:len(started(six...))-1], 2},
	{"deploying", append(started(six...),
		ev(2.4, "db1", fleet.PhaseCopy, "copying 12 path(s), 40.0 MiB"), progress(2.5, "db1", 0, 40<<20), progress(6, "db1", 12<<20, 40<<20),
		ev(2.4, "db2", fleet.PhaseCopy, "nothing to copy"), ev(2.5, "db2", fleet.PhaseActivate, supervised("db2")),
		ev(2.4, "web1", fleet.PhaseCopy, "copying 2 path(s), 5.4 KiB"), progress(2.5, "web1", 0, 5530), ev(2.6, "web1", fleet.PhaseCopy, "copied in 200ms"),
		ev(2.7, "web1", fleet.PhaseProfile, "system profile at generation 10"), ev(2.8, "web1", fleet.PhaseActivate, "switch-to-configuration switch"),
		done(11.5, "web1", fleet.Deployed, "deployed in 10.223s"),
		done(2.5, "web2", fleet.UpToDate, "up to date in 1.3s"),
		ev(2.4, "web3", fleet.PhaseCopy, "copying 3 path(s), 1.0 GiB"), progress(2.5, "web3", 0, 1<<30), progress(4, "web3", 100<<20, 1<<30),
		done(5, "web3", fleet.Failed, "failed: copy to root@web3 failed (exit 1): error: writing to file: No space left on device; nothing was activated"),
	), 8},
	{"interrupted", append(started("web1", "web2"),
		ev(2.4, "web1", fleet.PhaseActivate, supervised("web1")),
		ev(3, "web1", fleet.PhaseActivate, "interrupted: the activation has started and finishes anyway (stopped half-way, it would leave the host half-done): skiff waits for switch-to-configuration test to end on the host (at most 30s); then skiff reports how it ended"),
		done(3, "web2", fleet.Interrupted, "interrupted: interrupted during the copy; nothing was activated; the host still runs generation 9"),
	), 4},
	{"waves", append(started("web1", "web2"), ev(2.3, "", fleet.PhaseWave, "canary: web1"), ev(2.4, "web1", fleet.PhaseCopy, "nothing to copy")), 3},
}

// folded: more hosts than the screen has lines.
func foldedEvents() []fleet.Event {
	var names []string
	for i := 1; i <= 12; i++ {
		names = append(names, fmt.Sprintf("h%02d", i))
	}
	es := started(names...)
	for i, n := range names {
		switch {
		case i < 6:
			es = append(es, done(3+float64(i), n, fleet.Deployed, "deployed in 2s"))
		case i == 6:
			es = append(es, done(4, n, fleet.RolledBack, "rolled back: unit nginx.service failed; rolled back to generation 9"))
		case i == 7:
			es = append(es, done(4, n, fleet.Failed, "failed: connect: ssh: connect to host h08 port 22: Connection refused"))
		default:
			es = append(es, ev(3, n, fleet.PhaseActivate, supervised(n)))
		}
	}
	return es
}

func stateOf(events []fleet.Event) *liveState {
	s := newLiveState(t0)
	for _, e := range events {
		s.event(e)
	}
	return s
}

// TestLiveFrameGolden renders states of a run at several sizes and
// compares them with testdata/live/*.golden (go test -run Golden -update
// rewrites them).
func TestLiveFrameGolden(t *testing.T) {
	type render struct {
		name          string
		s             *liveState
		now           float64
		width, height int
	}
	var renders []render
	for _, c := range liveCases {
		for _, w := range []int{80, 200} {
			renders = append(renders, render{fmt.Sprintf("%s-%d", c.name, w), stateOf(c.events), c.now, w, 24})
		}
	}
	for _, h := range []int{24, 8, 4} {
		renders = append(renders, render{fmt.Sprintf("folded-80x%d", h), stateOf(foldedEvents()), 6, 80, h})
	}
	renders = append(renders, render{"narrow-30", stateOf(liveCases[2].events), 8, 30, 24})
	for _, r := range renders {
		t.Run(r.name, func(t *testing.T) {
			got := r.s.frame(at(r.now), r.width, r.height, false) + "\n"
			if r.name == "deploying-80" || r.name == "folded-80x24" || r.name == "interrupted-80" {
				got += r.s.runLine(at(r.now+10), true, false) + "\n" // the line Close leaves
			}
			path := filepath.Join("testdata", "live", r.name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if d := cmp.Diff(string(want), got); d != "" {
				t.Errorf("frame (-want +got)\n%s", d)
			}
		})
	}
}

// TestLiveFrameFitsTheScreen: whatever the size, with colour on, no line
// is wider than the screen and the frame leaves the cursor's line free.
func TestLiveFrameFitsTheScreen(t *testing.T) {
	states := []*liveState{stateOf(foldedEvents())}
	for _, c := range liveCases {
		states = append(states, stateOf(c.events))
	}
	for _, s := range states {
		for width := 10; width <= 200; width += 7 {
			for _, height := range []int{1, 2, 3, 5, 10, 40} {
				frame := s.frame(at(8), width, height, true)
				lines := strings.Split(frame, "\n")
				if len(lines) > max(height-1, 1) {
					t.Errorf("%dx%d: %d lines:\n%s", width, height, len(lines), frame)
				}
				for _, l := range lines {
					if w := lipgloss.Width(l); w > width {
						t.Errorf("%dx%d: line %d cells wide: %q", width, height, w, l)
					}
				}
			}
		}
	}
}

func TestLiveStateOfAHost(t *testing.T) {
	s := stateOf(liveCases[2].events)
	type hostView struct {
		Phase    fleet.Phase
		Step     string
		Result   fleet.Status
		Took     time.Duration
		Reason   string
		Done     int64
		Copied   bool
		Finished bool
	}
	view := func(n string) hostView {
		h := s.hosts[n]
		return hostView{h.phase, h.step, h.result, h.took, h.reason, h.done, h.copied, h.finished}
	}
	want := map[string]hostView{
		"db1":  {Phase: fleet.PhaseCopy, Step: "copying 12 path(s), 40.0 MiB", Done: 12 << 20},
		"db2":  {Phase: fleet.PhaseActivate, Step: "switch-to-configuration test under a supervisor"},
		"web1": {Phase: fleet.PhaseDone, Step: "switch-to-configuration switch", Result: fleet.Deployed, Took: 10223 * time.Millisecond, Copied: true, Finished: true},
		"web2": {Phase: fleet.PhaseDone, Step: "running generation 9", Result: fleet.UpToDate, Took: 1300 * time.Millisecond, Finished: true},
		"web3": {Phase: fleet.PhaseDone, Step: "copying 3 path(s), 1.0 GiB", Result: fleet.Failed, Took: 4 * time.Second,
			Reason: "copy to root@web3 failed: error: writing to file: No space left on device", Done: 100 << 20, Finished: true},
	}
	for n, w := range want {
		if d := cmp.Diff(w, view(n)); d != "" {
			t.Errorf("%s (-want +got)\n%s", n, d)
		}
	}
}

func TestShortStep(t *testing.T) {
	for msg, want := range map[string]string{
		supervised("web3"):                                                              "switch-to-configuration test under a supervisor",
		"connected in 120ms; running generation 9":                                      "running generation 9",
		"copying 2 path(s), 5.4 KiB":                                                    "copying 2 path(s), 5.4 KiB",
		"switching from generation 3 to generation 4 (" + storePath + ")":               "switching from generation 3 to generation 4",
		"no system profile yet, running " + storePath:                                   "no system profile yet, running /nix/store/…-nixos-system-web3-24.05",
		"unit nginx.service failed; rolled back to generation 9":                        "unit nginx.service failed",
		"copy to root@web3 failed (exit 1): error: writing; nothing was activated":      "copy to root@web3 failed: error: writing",
		"needs 1.0 GiB, 200.0 MiB free: deleting all but the newest 5 generations (gc)": "needs 1.0 GiB, 200.0 MiB free: deleting all but the newest 5 generations",
	} {
		if got := shortStep(msg); got != want {
			t.Errorf("shortStep(%q) = %q, want %q", msg, got, want)
		}
	}
}

func TestLiveEstimate(t *testing.T) {
	// Nothing known yet: "—".
	s := stateOf(started(six...))
	if l := s.runLine(at(3), false, false); !strings.Contains(l, "3s, — left · 6 hosts") {
		t.Errorf("run line before anything is known: %q", l)
	}
	// 2 of 6 hosts done 4s after the first started deploying: 8s left.
	s.event(ev(2, "db1", fleet.PhaseCopy, "nothing to copy"))
	s.event(done(4, "db1", fleet.Deployed, "deployed in 2s"))
	s.event(done(6, "db2", fleet.Deployed, "deployed in 4s"))
	if l := s.runLine(at(6), false, false); !strings.Contains(l, "~8s left") || !strings.Contains(l, "2/6 hosts: 2 deployed") {
		t.Errorf("run line from hosts done: %q", l)
	}
	// Copying 10 MiB of 110 MiB took 1s: 10s left, longer than the hosts'.
	s.event(ev(5, "web1", fleet.PhaseCopy, "copying 3 path(s), 110.0 MiB"))
	s.event(progress(5.1, "web1", 0, 110<<20))
	s.event(progress(6, "web1", 10<<20, 110<<20))
	if l := s.runLine(at(6), false, false); !strings.Contains(l, "~10s left") || !strings.Contains(l, "10.0 MiB of 110.0 MiB copied") {
		t.Errorf("run line from the copy rate: %q", l)
	}
}

// crlf is what a terminal's line discipline does to output (ONLCR).
type crlf struct {
	mu sync.Mutex
	w  *vt.Emulator
}

func (c *crlf) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.w.Write(bytes.ReplaceAll(p, []byte("\n"), []byte("\r\n")))
	return len(p), err
}

func (c *crlf) lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, l := range c.w.Scrollback().Lines() {
		out = append(out, strings.TrimRight(l.String(), " "))
	}
	for _, l := range strings.Split(c.w.String(), "\n") {
		out = append(out, strings.TrimRight(l, " "))
	}
	return out
}

// isRunLine: the view's first line (not a question skiff asks).
func isRunLine(s string) bool { return strings.HasPrefix(s, "skiff: ") && strings.Contains(s, " · ") }

func count(lines []string, pred func(string) bool) int {
	n := 0
	for _, l := range lines {
		if pred(l) {
			n++
		}
	}
	return n
}

// TestLiveOnATerminal draws a run through Bubble Tea into a terminal
// emulator of 60x12, pauses for a question, resumes and closes: at every
// point no frame is left behind (the run line and each host once on the
// screen and in its scrollback), and Close leaves the final run line alone.
func TestLiveOnATerminal(t *testing.T) {
	term := &crlf{w: vt.NewEmulator(60, 12)}
	go func() { // answers to queries, if any, must not block the emulator
		b := make([]byte, 256)
		for {
			if _, err := term.w.Read(b); err != nil {
				return
			}
		}
	}()
	l := newLive(term, true, tea.WithWindowSize(60, 12))
	check := func(when string, wantRunLines int) []string {
		t.Helper()
		lines := term.lines()
		if n := count(lines, isRunLine); n != wantRunLines {
			t.Errorf("%s: the run line %d times:\n%s", when, n, strings.Join(lines, "\n"))
		}
		for _, h := range foldedEvents() {
			if h.Host == "" {
				continue
			}
			if n := count(lines, func(s string) bool { return strings.HasPrefix(s, "  "+h.Host+" ") }); n > 1 {
				t.Errorf("%s: %s %d times:\n%s", when, h.Host, n, strings.Join(lines, "\n"))
				break
			}
		}
		return lines
	}
	settle := func() { time.Sleep(4 * tickEvery) }
	es := foldedEvents()
	for i, e := range es {
		e.Time = time.Now()
		l.Event(e)
		if i%8 == 0 {
			settle()
			check(fmt.Sprintf("after %d events", i), 1)
		}
	}
	settle()
	check("running", 1)
	l.Pause()
	lines := check("paused", 0)
	if strings.TrimSpace(strings.Join(lines, "")) != "" {
		t.Errorf("paused: the view was not cleared:\n%s", strings.Join(lines, "\n"))
	}
	fmt.Fprintln(term, "skiff: deploy to the 2 host(s) with changes? [y/N] y")
	lines = term.lines()
	if lines[0] != "skiff: deploy to the 2 host(s) with changes? [y/N] y" {
		t.Errorf("paused: the question is not at the top:\n%s", strings.Join(lines, "\n"))
	}
	l.Resume()
	l.Event(fleet.Event{Time: time.Now(), Host: "h09", Phase: fleet.PhaseActivate,
		Msg: "interrupted: the activation has started and finishes anyway (stopped half-way, it would leave the host half-done): skiff waits for switch-to-configuration test to end on the host; then skiff reports how it ended"})
	settle()
	check("resumed", 1)
	l.Close()
	lines = check("closed", 1)
	text := strings.Join(lines, "\n")
	for _, want := range []string{"h09: activate: interrupted: the activation has started and", "skiff: interrupted · ", "8/12 hosts: 6 deployed"} {
		if !strings.Contains(text, want) {
			t.Errorf("closed: no %q:\n%s", want, text)
		}
	}
	if n := count(lines, func(s string) bool { return strings.HasPrefix(s, "  h") }); n != 0 {
		t.Errorf("closed: %d host lines left:\n%s", n, text)
	}
}

// TestUnwrapClearsWhatRewrappingAdded: a terminal that narrows re-wraps
// the frame's long lines; unwrap goes up the rows this added above what
// the renderer cleared.
func TestUnwrapClearsWhatRewrappingAdded(t *testing.T) {
	line := func(w int) string { return strings.Repeat("x", w) }
	for _, c := range []struct {
		name          string
		frame         []string
		width, narrow int
		want          string
	}{
		{"nothing wider than the new width", []string{line(50), line(59)}, 160, 60, ""},
		// 76 cells take 2 rows at 60; the cursor ends the last line.
		{"three long lines", []string{line(76), line(76), line(76)}, 160, 60, "\r\x1b[3A\x1b[J\n"},
		// A last line as wide as the screen leaves the cursor at its start.
		{"a last line cut to the width", []string{line(76), line(30), line(80)}, 80, 60, "\r\x1b[1A\x1b[J\n"},
		{"a line of three rows", []string{line(150), line(10)}, 160, 60, "\r\x1b[2A\x1b[J\n"},
	} {
		var b bytes.Buffer
		(&Live{w: &b}).unwrap(strings.Join(c.frame, "\n"), c.width, c.narrow)
		if b.String() != c.want {
			t.Errorf("%s: wrote %q, want %q", c.name, b.String(), c.want)
		}
	}
}

func TestLiveRunPhase(t *testing.T) {
	built := started("web1")
	for _, c := range []struct {
		name   string
		events []fleet.Event
		final  bool
		want   string
	}{
		{"before any event", nil, false, "skiff: starting · 3s, — left"},
		{"evaluating", liveCases[0].events, false, "skiff: evaluating · "},
		{"an evaluation that failed", liveCases[0].events, true, "skiff: stopped while evaluating · "},
		{"building", built[:len(built)-1], false, "skiff: building 3 systems · "},
		{"a build that failed", append(built[:len(built)-1:len(built)-1], done(3, "web1", fleet.Failed, "failed: build failed")), true, "skiff: done · "},
		{"connected, built", built, false, "skiff: 3s, — left · 1 host"},
		{"deploying", append(built, ev(2.5, "web1", fleet.PhaseCopy, "nothing to copy")), false, "skiff: deploying · "},
		{"finishing", append(built, done(2.5, "web1", fleet.Deployed, "deployed in 1s")), false, "skiff: finishing · "},
		{"a build interrupted", append(built[:len(built)-1:len(built)-1], ev(2, "", fleet.PhaseBuild, "interrupted")), true, "skiff: interrupted · "},
		{"done", append(built, done(2.5, "web1", fleet.Deployed, "deployed in 1s")), true, "skiff: done · 3s · 1/1 hosts: 1 deployed"},
	} {
		if got := stateOf(c.events).runLine(at(3), c.final, false); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %q, want it to start with %q", c.name, got, c.want)
		}
	}
}
