package ui

import (
	"io"
	"sync"
	"time"

	tea "charm.land/bubbletea/v2"
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

	ctl     sync.Mutex // serialises Pause, Resume and Close
	prog    *tea.Program
	stopped chan struct{} // closed when prog's Run returned
	closed  bool
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
	running := l.prog != nil
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
	if !l.closed && l.prog == nil {
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

func (l *Live) start() {
	opts := append([]tea.ProgramOption{tea.WithInput(nil), tea.WithoutSignalHandler(), tea.WithOutput(l.w)}, l.opts...)
	l.mu.Lock()
	m := &liveModel{l: l, width: l.width}
	l.mu.Unlock()
	p := tea.NewProgram(m, opts...)
	done := make(chan struct{})
	l.prog, l.stopped = p, done
	go func() {
		defer close(done)
		_, _ = p.Run()
	}()
}

func (l *Live) stop(final bool) {
	if l.prog == nil {
		return
	}
	l.prog.Send(stopMsg{final: final})
	<-l.stopped
	l.prog = nil
}

// liveModel is the Bubble Tea model: it draws the Live's state at each
// tick at the size the terminal says.
type liveModel struct {
	l             *Live
	width, height int
	sized         bool // the program said the terminal's size
	stopping      bool
	final         bool
}

type tickMsg struct{}

type stopMsg struct{ final bool }

const tickEvery = 100 * time.Millisecond

func tick() tea.Cmd {
	return tea.Tick(tickEvery, func(time.Time) tea.Msg { return tickMsg{} })
}

func (m *liveModel) Init() tea.Cmd { return tick() }

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
	}
	return m, nil
}

func (m *liveModel) View() tea.View {
	if !m.final && (m.stopping || !m.sized) { // nothing drawn before the size is known
		return tea.NewView("")
	}
	m.l.mu.Lock()
	defer m.l.mu.Unlock()
	now := time.Now()
	// The view ends with a newline: the renderer leaves the cursor on
	// its last line and clears it when it stops.
	if m.final {
		return tea.NewView(cut(m.l.state.runLine(now, true, m.l.color), m.width) + "\n")
	}
	return tea.NewView(m.l.state.frame(now, m.width, m.height, m.l.color) + "\n")
}
