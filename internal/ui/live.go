package ui

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/skiffdeploy/skiff/internal/fleet"
	"github.com/skiffdeploy/skiff/internal/human"
)

// Live redraws a block of lines on a terminal: one line per host with its
// phase, bytes copied of bytes to copy and elapsed time. When the fleet is
// taller than the screen, finished hosts collapse into counts. Colour,
// when on, only repeats what the words say.
type Live struct {
	w      io.Writer
	rows   func() int
	color  bool
	start  time.Time
	mu     sync.Mutex
	run    string // the run-level phase and message
	hosts  map[string]*liveHost
	drawn  int
	paused bool
	stop   chan struct{}
	done   chan struct{}
	closed bool
}

type liveHost struct {
	name        string
	phase       fleet.Phase
	msg         string
	start       time.Time
	end         time.Time
	done, total int64
	finished    bool
	result      string
}

// NewLive starts redrawing on w every 100ms until Close. rows reports the
// terminal's height.
func NewLive(w io.Writer, rows func() int, color bool) *Live {
	l := &Live{w: w, rows: rows, color: color, start: time.Now(), hosts: map[string]*liveHost{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go l.loop()
	return l
}

func (l *Live) loop() {
	defer close(l.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			l.draw(time.Now())
			return
		case now := <-t.C:
			l.draw(now)
		}
	}
}

// Pause stops redrawing and clears the block, so that something else (a
// plan and its question) can use the terminal; Resume starts again below.
func (l *Live) Pause() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paused = true
	if l.drawn > 0 {
		fmt.Fprintf(l.w, "\x1b[%dA\x1b[J", l.drawn)
		l.drawn = 0
	}
}

// Resume redraws again after Pause.
func (l *Live) Resume() {
	l.mu.Lock()
	l.paused = false
	l.mu.Unlock()
}

// Close draws the last frame and stops redrawing.
func (l *Live) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
}

// Event implements fleet.Reporter.
func (l *Live) Event(e fleet.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.Host == "" {
		l.run = fmt.Sprintf("%s: %s", e.Phase, e.Msg)
		return
	}
	h := l.hosts[e.Host]
	if h == nil {
		h = &liveHost{name: e.Host, start: e.Time}
		l.hosts[e.Host] = h
	}
	if e.Output {
		return
	}
	if e.Progress {
		h.done, h.total = e.Done, e.Total
		return
	}
	h.phase, h.msg = e.Phase, e.Msg
	if e.Phase == fleet.PhaseDone {
		h.finished, h.end, h.result = true, e.Time, string(e.Status)
	}
}

func (l *Live) draw(now time.Time) {
	l.mu.Lock()
	if l.paused {
		l.mu.Unlock()
		return
	}
	lines := l.frame(now)
	var b strings.Builder
	if l.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", l.drawn)
	}
	for _, line := range lines {
		b.WriteString("\r\x1b[2K" + line + "\n")
	}
	for i := len(lines); i < l.drawn; i++ { // clear what a taller frame left
		b.WriteString("\r\x1b[2K\n")
	}
	if extra := l.drawn - len(lines); extra > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", extra)
	}
	l.drawn = len(lines)
	l.mu.Unlock()
	io.WriteString(l.w, b.String())
}

// frame renders the current state; it is pure given the state and now.
func (l *Live) frame(now time.Time) []string {
	elapsed := now.Sub(l.start).Round(100 * time.Millisecond)
	lines := []string{fmt.Sprintf("skiff %s  %s", elapsed, l.run)}
	names := make([]string, 0, len(l.hosts))
	width := 4
	for n := range l.hosts {
		names = append(names, n)
		width = max(width, len(n))
	}
	sort.Strings(names)
	room := len(names)
	if rows := l.rows(); rows > 0 && len(names)+1 > rows-1 {
		room = max(rows-3, 1)
	}
	var shown, finished []*liveHost
	for _, n := range names {
		h := l.hosts[n]
		if h.finished {
			finished = append(finished, h)
		} else {
			shown = append(shown, h)
		}
	}
	// Finished hosts fill whatever room the running ones leave; the
	// others are counted.
	hiddenRunning := 0
	if len(shown) < room {
		keep := room - len(shown)
		if keep >= len(finished) {
			shown, finished = append(shown, finished...), nil
		} else {
			shown, finished = append(shown, finished[len(finished)-keep:]...), finished[:len(finished)-keep]
		}
	} else {
		hiddenRunning = len(shown) - room
		shown = shown[:room]
	}
	sort.Slice(shown, func(i, j int) bool { return shown[i].name < shown[j].name })
	for _, h := range shown {
		lines = append(lines, l.hostLine(h, width, now))
	}
	hidden := len(names) - len(shown)
	if hidden > 0 {
		counts := map[string]int{}
		for _, h := range finished {
			counts[h.result]++
		}
		var parts []string
		for _, k := range []string{"deployed", "up to date", "rolled back", "failed", "interrupted", "skipped"} {
			if counts[k] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
			}
		}
		if hiddenRunning > 0 {
			parts = append(parts, fmt.Sprintf("%d more running", hiddenRunning))
		}
		lines = append(lines, "  ... "+strings.Join(parts, ", "))
	}
	return lines
}

func (l *Live) hostLine(h *liveHost, width int, now time.Time) string {
	end := now
	if h.finished {
		end = h.end
	}
	detail := h.msg
	if h.phase == fleet.PhaseCopy && h.total > 0 && !h.finished {
		detail = fmt.Sprintf("%s of %s", human.Bytes(h.done), human.Bytes(h.total))
	}
	phase := string(h.phase)
	if h.finished {
		phase = h.result
		detail = strings.TrimPrefix(strings.TrimPrefix(h.msg, h.result), ": ")
		if strings.HasPrefix(detail, "in ") {
			detail = ""
		}
	}
	phase = fmt.Sprintf("%-11s", phase)
	if l.color {
		switch {
		case h.finished && (h.result == "failed" || h.result == "rolled back" || h.result == "interrupted"):
			phase = "\x1b[31m" + phase + "\x1b[0m"
		case h.finished:
			phase = "\x1b[32m" + phase + "\x1b[0m"
		}
	}
	return fmt.Sprintf("  %-*s  %s %6s  %s", width, h.name, phase, end.Sub(h.start).Round(100*time.Millisecond), detail)
}
