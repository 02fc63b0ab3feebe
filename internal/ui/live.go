package ui

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/skiffdeploy/skiff/internal/fleet"
)

// Live draws the run on a terminal with Bubble Tea: a run line (phase,
// hosts done by result, bytes copied, elapsed time, what is left) and a
// line per host (phase, progress bar while copying, the short form of its
// step), each cut to the terminal's width and redrawn on resize. When the
// fleet is taller than the screen, working hosts stay listed, failed ones
// as room allows, and the others are counted. It draws on the writer it
// is given (standard error) and nothing else: it reads no input and
// installs no signal handler, so Ctrl-C stays the caller's. Lines that
// must stay (an interrupt's announcement) are printed above the view in
// full. Close replaces the view with the run line alone.
//
// Each stretch of drawing is one Bubble Tea program: Pause (and a line
// printed above) ends it with an empty view, which clears the frame, and
// Resume starts another below what was printed meanwhile.
type Live struct {
	w     io.Writer
	color bool
	opts  []tea.ProgramOption

	mu    sync.Mutex
	state *liveState
	width int // the terminal's, as the program last said

	ctl     sync.Mutex    // serialises Pause, Resume, Close and printing above
	running bool          // a stretch of drawing goes on
	stopped chan struct{} // closed when it has ended
	closed  bool

	pmu  sync.Mutex // guards prog and req, which the stretch's driver changes
	prog *tea.Program
	req  *stopMsg // the stop asked of the stretch
}

// NewLive starts drawing on w, a terminal, until Close.
func NewLive(w io.Writer, color bool) *Live {
	return newLive(w, color)
}

// newLive is NewLive with extra program options (a fixed size for tests).
func newLive(w io.Writer, color bool, opts ...tea.ProgramOption) *Live {
	l := &Live{w: w, color: color, opts: opts, state: newLiveState(time.Now())}
	l.start()
	return l
}

// Event implements fleet.Reporter.
func (l *Live) Event(e fleet.Event) {
	l.mu.Lock()
	l.state.event(e)
	notices, width := l.state.takeNotices(), l.width
	l.mu.Unlock()
	if len(notices) > 0 {
		l.printAbove(notices, width)
	}
}

// printAbove prints lines in full above the view, wrapped to the
// terminal's width: the view is cleared, the lines printed, and the view
// drawn again below them.
func (l *Live) printAbove(lines []string, width int) {
	l.ctl.Lock()
	defer l.ctl.Unlock()
	running := l.running
	l.stop(false)
	for _, line := range lines {
		if width > 0 {
			line = ansi.Wrap(line, width, " ")
		}
		io.WriteString(l.w, line+"\n")
	}
	if running {
		l.start()
	}
}

// Pause clears the view and stops drawing, so that something else (a plan
// and its question) can use the terminal; Resume draws again below what
// was printed meanwhile.
func (l *Live) Pause() {
	l.ctl.Lock()
	defer l.ctl.Unlock()
	l.stop(false)
}

// Resume draws again after Pause.
func (l *Live) Resume() {
	l.ctl.Lock()
	defer l.ctl.Unlock()
	if !l.closed && !l.running {
		l.start()
	}
}

// Close replaces the view with the final run line and stops drawing; what
// is printed next (the summary table) goes below it.
func (l *Live) Close() {
	l.ctl.Lock()
	defer l.ctl.Unlock()
	l.stop(true)
	l.closed = true
}

// start starts a stretch of drawing.
func (l *Live) start() {
	l.pmu.Lock()
	l.req, l.prog = nil, l.program(nil)
	l.pmu.Unlock()
	done := make(chan struct{})
	l.running, l.stopped = true, done
	go l.drive(done)
}

// program is a Bubble Tea program drawing l; with req, it only draws what
// the stop asks for (nothing, or the final run line) and quits.
func (l *Live) program(req *stopMsg) *tea.Program {
	l.mu.Lock()
	m := &liveModel{l: l, width: l.width}
	l.mu.Unlock()
	if req != nil {
		m.stopping, m.final = true, req.final
	}
	opts := append([]tea.ProgramOption{tea.WithInput(nil), tea.WithoutSignalHandler(), tea.WithOutput(l.w),
		tea.WithFilter(narrowing)}, l.opts...)
	return tea.NewProgram(m, opts...)
}

// drive runs the stretch's programs until one ends for good: a program
// that ends because the terminal narrowed is followed by another.
func (l *Live) drive(done chan struct{}) {
	defer close(done)
	l.pmu.Lock()
	p := l.prog
	l.pmu.Unlock()
	for {
		res, err := p.Run()
		m, _ := res.(*liveModel)
		if err != nil || m == nil || m.narrowed == 0 {
			return
		}
		l.unwrap(m.drawn, m.width, m.narrowed)
		l.pmu.Lock()
		req := l.req
		if req != nil && !req.final {
			l.pmu.Unlock()
			return
		}
		p = l.program(req)
		l.prog = p
		l.pmu.Unlock()
	}
}

// stop ends the stretch of drawing: the view is cleared, or replaced by
// the final run line.
func (l *Live) stop(final bool) {
	if !l.running {
		return
	}
	l.pmu.Lock()
	l.req = &stopMsg{final: final}
	p := l.prog
	l.pmu.Unlock()
	p.Send(stopMsg{final: final}) // returns at once if p has ended
	<-l.stopped
	l.running = false
}

// A terminal that gets narrower re-wraps the lines it shows (most do:
// tmux, VTE, kitty, iTerm2...): a frame of n lines then takes more rows,
// and the renderer, which goes up as many rows as it drew lines to clear
// or redraw it, would leave its top behind. So a narrowing ends the
// program, whose empty last view clears what it can, unwrap clears the
// rows the re-wrapping added above, and another program draws at the new
// width. On a terminal that cuts lines instead of re-wrapping them, the
// rows cleared above the frame were someone else's: lines a narrower
// screen had cut anyway.

// narrowMsg is a WindowSizeMsg narrower than what the frame was drawn at.
type narrowMsg tea.WindowSizeMsg

func narrowing(model tea.Model, msg tea.Msg) tea.Msg {
	if ws, ok := msg.(tea.WindowSizeMsg); ok {
		if m, ok := model.(*liveModel); ok && m.sized && m.drawn != "" && ws.Width < m.width {
			return narrowMsg(ws)
		}
	}
	return msg
}

// unwrap clears the rows above the cursor that re-wrapping frame (drawn
// at width) to newWidth added, after the program cleared the rest.
func (l *Live) unwrap(frame string, width, newWidth int) {
	lines := strings.Split(frame, "\n")
	rows := func(line string) int { return max(1, (lipgloss.Width(line)+newWidth-1)/newWidth) }
	// The renderer leaves the cursor after the last line, or at its
	// start when that line fills the screen; it clears from the start
	// of the cursor's row, going up a row per line.
	above := 0
	for _, line := range lines[:len(lines)-1] {
		above += rows(line)
	}
	if last := lines[len(lines)-1]; lipgloss.Width(last) < width-1 {
		above += rows(last) - 1
	}
	// The new frame starts a line lower: tmux keeps the cursor's row on a
	// resize and pushes the rows above into its history, so going up may
	// stop at the screen's top, and tmux saves the whole screen into its
	// history each time the renderer clears from there.
	if extra := above - (len(lines) - 1); extra > 0 {
		fmt.Fprintf(l.w, "\r\x1b[%dA\x1b[J\n", extra)
	}
}

// liveModel is the Bubble Tea model: it draws the Live's state at each
// tick at the size the terminal says.
type liveModel struct {
	l             *Live
	width, height int
	sized         bool // the program said the terminal's size
	stopping      bool
	final         bool
	drawn         string // the last frame drawn
	narrowed      int    // the width the terminal narrowed to
}

type tickMsg struct{}

type stopMsg struct{ final bool }

const tickEvery = 100 * time.Millisecond

func tick() tea.Cmd {
	return tea.Tick(tickEvery, func(time.Time) tea.Msg { return tickMsg{} })
}

func (m *liveModel) Init() tea.Cmd {
	if m.stopping {
		return tea.Quit
	}
	return tick()
}

func (m *liveModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height, m.sized = msg.Width, msg.Height, true
		m.l.mu.Lock()
		m.l.width = msg.Width
		m.l.mu.Unlock()
	case tickMsg:
		if !m.stopping {
			return m, tick()
		}
	case stopMsg:
		m.stopping, m.final = true, msg.final
		return m, tea.Quit
	case narrowMsg:
		m.stopping, m.narrowed = true, msg.Width
		m.l.mu.Lock()
		m.l.width = msg.Width
		m.l.mu.Unlock()
		return m, tea.Quit
	}
	return m, nil
}

func (m *liveModel) View() tea.View {
	v := tea.NewView("")
	// It reads no input: the terminal's modes stay as they are.
	v.DisableBracketedPasteMode = true
	if !m.final && (m.stopping || !m.sized) { // nothing drawn before the size is known
		return v
	}
	m.l.mu.Lock()
	defer m.l.mu.Unlock()
	now := time.Now()
	// The view ends with a newline, a blank last row: when the program
	// ends, the renderer clears from its last row down, which must not
	// be the run line's.
	if m.final {
		v.Content = cut(m.l.state.runLine(now, true, m.l.color), m.width) + "\n"
		return v
	}
	m.drawn = m.l.state.frame(now, m.width, m.height, m.l.color)
	v.Content = m.drawn + "\n"
	return v
}
