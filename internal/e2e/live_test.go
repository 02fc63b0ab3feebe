package e2e

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/x/vt"
	"github.com/creack/pty"

	"github.com/skiffdeploy/skiff/internal/lab"
)

// The live view as a person sees it: skiff deploy runs in a real
// pseudo-terminal whose output feeds a terminal emulator, and the test
// reads the emulator's screen (and what scrolled off it) while the run goes
// on and once it has ended.

// screen is a terminal emulator fed by a pty.
type screen struct {
	mu     sync.Mutex
	term   *vt.Emulator
	hosts  []string
	loose  bool     // lines other than the view's and the table's may show
	bad    []string // what went wrong, as seen
	cut    bool     // a line was cut with an ellipsis
	frames int      // screens checked while the view was drawn
}

// lines are the screen's lines, what scrolled off first.
func (s *screen) lines() []string {
	var out []string
	for _, l := range s.term.Scrollback().Lines() {
		out = append(out, strings.TrimRight(l.String(), " "))
	}
	for _, l := range strings.Split(s.term.String(), "\n") {
		out = append(out, strings.TrimRight(l, " "))
	}
	return out
}

// isRunLine is the view's first line.
func isRunLine(l string) bool { return strings.HasPrefix(l, "skiff: ") && strings.Contains(l, " · ") }

var tableRowRE = regexp.MustCompile(`^(HOST +RESULT|[a-z0-9-]+ +(deployed|up to date|failed|rolled back|interrupted|skipped) )`)

// check looks at the screen as it is: the run line at most once, each host
// on at most one line, and every line one the view or the summary table
// draws (a line the terminal wrapped would be none of these).
func (s *screen) check(when string) {
	lines := s.lines()
	runs := 0
	seen := map[string]int{}
	for _, l := range lines {
		switch {
		case l == "":
		case isRunLine(l):
			runs++
		case strings.HasPrefix(l, "  … "):
		case strings.HasPrefix(l, "  "):
			name, _, _ := strings.Cut(strings.TrimSpace(l), " ")
			if s.isHost(name) {
				seen[name]++
			} else if !s.loose {
				s.bad = append(s.bad, fmt.Sprintf("%s: a line of no host: %q", when, l))
			}
		case tableRowRE.MatchString(l), s.loose:
		default:
			s.bad = append(s.bad, fmt.Sprintf("%s: a stray line (wrapped?): %q", when, l))
		}
		if strings.HasSuffix(l, "…") {
			s.cut = true
		}
	}
	if runs > 1 {
		s.bad = append(s.bad, fmt.Sprintf("%s: %d run lines: a frame was left behind", when, runs))
	}
	for h, n := range seen {
		if n > 1 {
			s.bad = append(s.bad, fmt.Sprintf("%s: %s on %d lines: a frame was left behind", when, h, n))
		}
	}
	if len(s.bad) > 0 && len(s.bad) < 4 {
		s.bad = append(s.bad, "screen:\n"+strings.Join(lines, "\n"))
	}
}

func (s *screen) isHost(name string) bool {
	for _, h := range s.hosts {
		if h == name {
			return true
		}
	}
	return false
}

// ptyRun is how liveRun runs skiff.
type ptyRun struct {
	cols, rows int
	loose      bool                    // lines other than the view's and the table's may show (a plan, messages)
	marker     string                  // at is called once when the screen first shows marker
	at         func(*screen, *os.File) // with the pty's controlling end
	stdout     io.Writer               // standard output, when not the pty
}

// liveRun runs skiff in a pty and checks the screen while it runs. It
// returns the final screen's lines and the exit code.
func liveRun(t *testing.T, l *lab.Lab, hosts []string, r ptyRun, args ...string) ([]string, int) {
	cols, rows, marker, at := r.cols, r.rows, r.marker, r.at
	t.Helper()
	cmd := exec.Command(skiffBinary(t), append([]string{"-F", l.SSHConfig(), "--nix-option", "substituters="}, args...)...)
	// A person's terminal: not CI, colours on.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CI=") && !strings.HasPrefix(kv, "TERM=") && !strings.HasPrefix(kv, "NO_COLOR=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "TERM=xterm-256color", "SKIFF_HISTORY="+filepath.Join(t.TempDir(), "history.db"))
	cmd.Stdout = r.stdout
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: uint16(rows), Cols: uint16(cols)})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	s := &screen{term: vt.NewEmulator(cols, rows), hosts: hosts, loose: r.loose}
	s.term.SetScrollbackSize(10000)
	go func() { _, _ = io.Copy(io.Discard, s.term) }() // the terminal's answers, if any
	var raw strings.Builder
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		b := make([]byte, 4096)
		for {
			n, err := ptmx.Read(b)
			if n > 0 {
				s.mu.Lock()
				raw.Write(b[:n])
				s.term.Write(b[:n])
				s.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	// While it runs, look at the screen as a person would, every 100ms.
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	resized, shown := at == nil, false
	var werr error
loop:
	for {
		select {
		case werr = <-waited:
			break loop
		case <-time.After(100 * time.Millisecond):
			s.mu.Lock()
			s.frames++
			s.check(fmt.Sprintf("frame %d", s.frames))
			marked := strings.Contains(s.term.String(), marker)
			if marked && !shown {
				shown = true
				t.Logf("the screen when it shows %q:\n%s", marker, s.term.String())
			}
			s.mu.Unlock()
			if !resized && marked {
				resized = true
				at(s, ptmx)
			}
		}
	}
	select { // the output the process left in the pty
	case <-readDone:
	case <-time.After(5 * time.Second):
	}
	code := 0
	var exit *exec.ExitError
	if errors.As(werr, &exit) {
		code = exit.ExitCode()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.check("final screen")
	final := s.lines()
	t.Logf("skiff %s in %dx%d: exit %d, %d screens checked; final screen:\n%s", strings.Join(args, " "), cols, rows, code, s.frames, strings.Join(final, "\n"))
	for _, b := range s.bad {
		t.Error(b)
	}
	if cols <= 80 && !s.cut {
		t.Errorf("no line was cut to the screen's %d columns", cols)
	}
	if t.Failed() {
		t.Logf("raw output: %q", raw.String())
	}
	return final, code
}

// finalChecks: the run line once (the final one), every host once, in the
// summary table, deployed, and no host line of the view left.
func finalChecks(t *testing.T, final, hosts []string) {
	t.Helper()
	runs := 0
	for _, l := range final {
		if isRunLine(l) {
			runs++
			if !strings.HasPrefix(l, "skiff: done · ") || !strings.Contains(l, fmt.Sprintf("%d/%d hosts: %d deployed", len(hosts), len(hosts), len(hosts))) {
				t.Errorf("final run line %q", l)
			}
		}
	}
	if runs != 1 {
		t.Errorf("the final screen has %d run lines, want 1", runs)
	}
	for _, h := range hosts {
		rows, viewLines := 0, 0
		for _, l := range final {
			if strings.HasPrefix(l, h+" ") {
				rows++
				if cols := splitColumns(l); len(cols) < 2 || cols[1] != "deployed" {
					t.Errorf("%s: summary row %q", h, l)
				}
			}
			if strings.HasPrefix(l, "  "+h+" ") {
				viewLines++
			}
		}
		if rows != 1 || viewLines != 0 {
			t.Errorf("%s: %d summary rows and %d lines of the view on the final screen, want 1 and 0", h, rows, viewLines)
		}
	}
}

func TestLiveViewInATerminal(t *testing.T) {
	// Names long enough that a host's line is wider than 80 columns.
	specs := lab.Hosts(10, "lv")
	for i := range specs {
		specs[i].Name = fmt.Sprintf("lv%02d-frontend-eu-west", i+1)
	}
	l := newLab(t, specs...)
	var hosts []string
	for _, s := range specs {
		hosts = append(hosts, s.Name)
	}
	flake := func(gen int) string {
		var b strings.Builder
		for i, h := range hosts {
			extra := fmt.Sprintf("generation = %d; activationDelay = %d;", gen, 2+i%3)
			if i%3 == 0 {
				extra += fmt.Sprintf(" baseSize = %d;", (8<<20)*(1+i/3)+gen) // something to copy for a while
			}
			b.WriteString(host(h, extra))
		}
		return writeFlake(t, b.String())
	}
	// A first system, so that the runs below activate under the
	// supervisor with its long message.
	wantCode(t, skiffOn(t, l, "deploy", "--flake", flake(1)), 0)

	t.Run("80x10", func(t *testing.T) {
		// Fewer lines than hosts: finished hosts fold into counts.
		final, code := liveRun(t, l, hosts, ptyRun{cols: 80, rows: 10}, "deploy", "--flake", flake(2))
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		finalChecks(t, final, hosts)
	})
	t.Run("200x30", func(t *testing.T) {
		// Narrowed while hosts activate, then widened again.
		resize := func(s *screen, ptmx *os.File) {
			pty.Setsize(ptmx, &pty.Winsize{Rows: 30, Cols: 120})
			time.Sleep(500 * time.Millisecond) // the view redraws at 120 columns
			s.mu.Lock()
			s.term.Resize(120, 30)
			s.mu.Unlock()
			time.Sleep(time.Second)
			s.mu.Lock()
			s.term.Resize(200, 30)
			s.mu.Unlock()
			pty.Setsize(ptmx, &pty.Winsize{Rows: 30, Cols: 200})
		}
		final, code := liveRun(t, l, hosts, ptyRun{cols: 200, rows: 30, marker: " activate ", at: resize}, "deploy", "--flake", flake(3))
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		finalChecks(t, final, hosts)
	})
	t.Run("ctrl-c", func(t *testing.T) {
		// Ctrl-C typed on the terminal while hosts activate: the view
		// took neither the terminal's input nor the signal, skiff's
		// announcement shows in full above it, and the view ends.
		ctrlC := func(s *screen, ptmx *os.File) { ptmx.Write([]byte{3}) }
		final, code := liveRun(t, l, hosts, ptyRun{cols: 100, rows: 30, loose: true, marker: " activate ", at: ctrlC}, "deploy", "--flake", flake(4))
		if code != 130 {
			t.Errorf("exit %d, want 130", code)
		}
		text := strings.Join(final, "\n")
		for _, want := range []string{": activate: interrupted: the activation has started and finishes anyway", "skiff: interrupted · "} {
			if !strings.Contains(text, want) {
				t.Errorf("the final screen lacks %q", want)
			}
		}
		runs := 0
		for _, l := range final {
			if isRunLine(l) {
				runs++
			}
		}
		if runs != 1 {
			t.Errorf("the final screen has %d run lines, want 1", runs)
		}
	})
	t.Run("plan", func(t *testing.T) {
		// --plan: the view stops for the plan and its question, which
		// are read on the terminal, and draws again below the answer.
		yes := func(s *screen, ptmx *os.File) { ptmx.Write([]byte("y\r")) }
		final, code := liveRun(t, l, hosts, ptyRun{cols: 100, rows: 40, loose: true, marker: "[y/N]", at: yes}, "deploy", "--plan", "--flake", flake(5))
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		text := strings.Join(final, "\n")
		if strings.Count(text, "skiff: deploy to the 10 host(s) with changes? [y/N] y") != 1 {
			t.Errorf("the question and its answer are not on the final screen once")
		}
		finalChecks(t, final, hosts)
	})
	t.Run("stdout-piped", func(t *testing.T) {
		// The view draws on the terminal (stderr) only: the summary
		// table on a piped stdout is the table alone.
		var stdout strings.Builder
		final, code := liveRun(t, l, hosts, ptyRun{cols: 120, rows: 30, stdout: &stdout}, "deploy", "--flake", flake(6))
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
		if len(lines) != len(hosts)+1 {
			t.Errorf("stdout has %d lines, want the table's %d:\n%q", len(lines), len(hosts)+1, stdout.String())
		}
		for _, l := range lines {
			if !tableRowRE.MatchString(l) || strings.ContainsRune(l, 0x1b) {
				t.Errorf("stdout line %q is not the table's", l)
			}
		}
		runs := 0
		for _, l := range final {
			if isRunLine(l) {
				runs++
			} else if strings.TrimSpace(l) != "" {
				t.Errorf("the screen has %q besides the view's last line", l)
			}
		}
		if runs != 1 {
			t.Errorf("the final screen has %d run lines, want 1", runs)
		}
	})
}
