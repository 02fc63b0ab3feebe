package ui

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/skiffdeploy/skiff/internal/fleet"
	"github.com/skiffdeploy/skiff/internal/human"
)

// This file is the live view's layout: a pure function from the state the
// events built (liveState) and the time, the terminal's width and height
// to the frame. live.go feeds it events and draws its frames.

// liveState is what the live view knows of a run.
type liveState struct {
	start    time.Time
	phase    string // of the run: evaluating, building 3 systems, ...
	wave     string // the wave being deployed, when the run has waves
	total    int    // hosts evaluated (0 until known)
	builds   int    // builds running (local and on build hosts)
	hosts    map[string]*liveHost
	notices  []string // full lines to print above the view (not yet printed)
	deployAt time.Time
	stopped  bool // the run was interrupted
}

// liveHost is one host of the live view.
type liveHost struct {
	name        string
	phase       fleet.Phase
	step        string // short form of the current step
	start, end  time.Time
	copyAt      time.Time // when its copy started
	done, total int64     // bytes copied of bytes to copy
	copied      bool      // the copy finished
	finished    bool
	result      fleet.Status
	took        time.Duration // as the done event said, else end - start
	reason      string        // why a host failed, short
}

func newLiveState(start time.Time) *liveState {
	return &liveState{start: start, hosts: map[string]*liveHost{}}
}

var (
	evaluatedRE = regexp.MustCompile(`^evaluated (\d+) host`)
	buildingRE  = regexp.MustCompile(`^building (\d+) system\(s\)`)
	tookRE      = regexp.MustCompile(` in ([0-9.]+[a-zµ]+(?:[0-9.]+[a-zµ]+)*)$`)
)

// event updates the state with one fleet event.
func (s *liveState) event(e fleet.Event) {
	if e.Host == "" {
		s.runEvent(e)
		return
	}
	h := s.hosts[e.Host]
	if h == nil {
		h = &liveHost{name: e.Host, start: e.Time}
		s.hosts[e.Host] = h
	}
	if e.Output || h.finished {
		return
	}
	if e.Progress {
		h.done, h.total = e.Done, e.Total
		return
	}
	if h.phase == fleet.PhaseCopy && e.Phase != fleet.PhaseCopy && e.Phase != fleet.PhaseDone && h.total > 0 {
		h.copied = true // the copy ended: the last path's bytes have no progress event
	}
	switch e.Phase {
	case fleet.PhaseCopy:
		if strings.HasPrefix(e.Msg, "copying ") && h.copyAt.IsZero() {
			h.copyAt = e.Time
		}
		if strings.HasPrefix(e.Msg, "copied ") || strings.HasPrefix(e.Msg, "sent ") {
			h.copied = true
		}
		fallthrough
	case fleet.PhaseProfile, fleet.PhaseActivate, fleet.PhaseRollback:
		if s.deployAt.IsZero() {
			s.deployAt = e.Time
		}
	}
	if e.Phase != fleet.PhaseConnect && e.Phase != fleet.PhaseBuild && strings.HasPrefix(s.phase, "building ") {
		s.phase, s.builds = "", 0 // hosts deploy once the build is over, whether it said so or not
	}
	h.phase = e.Phase
	if strings.HasPrefix(e.Msg, "interrupted") {
		s.stopped = true
	}
	if strings.HasPrefix(e.Msg, "interrupted: the activation has started") {
		s.notices = append(s.notices, fmt.Sprintf("%s: %s: %s", e.Host, e.Phase, e.Msg))
		h.step = "interrupted: the activation finishes anyway"
		return
	}
	if e.Phase != fleet.PhaseDone {
		h.step = shortStep(e.Msg)
		return
	}
	h.finished, h.end, h.result = true, e.Time, e.Status
	if h.result == "" { // a reporter that sets no status: the message starts with it
		for _, st := range []fleet.Status{fleet.Deployed, fleet.UpToDate, fleet.RolledBack, fleet.Failed, fleet.Skipped, fleet.Interrupted} {
			if strings.HasPrefix(e.Msg, string(st)) {
				h.result = st
			}
		}
	}
	h.took = h.end.Sub(h.start)
	if m := tookRE.FindStringSubmatch(e.Msg); m != nil && strings.HasPrefix(e.Msg, string(h.result)+" in ") {
		if d, err := time.ParseDuration(m[1]); err == nil {
			h.took = d
		}
	}
	if rest, ok := strings.CutPrefix(e.Msg, string(h.result)+": "); ok {
		h.reason = shortStep(rest)
		if h.result == fleet.Interrupted {
			h.reason = strings.TrimPrefix(h.reason, "interrupted ") // "interrupted after 2s: during the copy"
		}
	}
	if h.result == fleet.Deployed || h.result == fleet.RolledBack {
		h.copied = h.total > 0 // its copy, if any, went through
	}
}

func (s *liveState) runEvent(e fleet.Event) {
	switch e.Phase {
	case fleet.PhaseEval:
		if m := evaluatedRE.FindStringSubmatch(e.Msg); m != nil {
			fmt.Sscan(m[1], &s.total)
			s.phase = "connecting"
		} else {
			s.phase = "evaluating"
		}
	case fleet.PhaseBuild:
		switch {
		case buildingRE.MatchString(e.Msg):
			s.builds++
			n := 0
			fmt.Sscan(buildingRE.FindStringSubmatch(e.Msg)[1], &n)
			s.phase = fmt.Sprintf("building %d %s", n, plural(n, "system", "systems"))
		case strings.HasPrefix(e.Msg, "built "), strings.HasPrefix(e.Msg, "build on "):
			if s.builds--; s.builds <= 0 {
				s.phase = ""
			}
		case e.Msg == "interrupted":
			s.phase, s.stopped = "interrupted", true
		}
	case fleet.PhaseCopy:
		if strings.HasPrefix(e.Msg, "pushing ") && !strings.Contains(e.Msg, " failed") {
			s.phase = "pushing to the binary cache"
		} else {
			s.phase = ""
		}
	case fleet.PhaseWave:
		s.wave, _, _ = strings.Cut(e.Msg, ":")
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

var storeHashRE = regexp.MustCompile(`/nix/store/[0-9a-z]{32}-`)

// shortStep is the short form of a step's message: without what it says
// in parentheses and, for a message of several clauses, the first one
// that says more than how long something took. The full message is in the
// plain and JSON output.
func shortStep(msg string) string {
	var b strings.Builder
	depth := 0
	for i := 0; i < len(msg); i++ {
		switch c := msg[i]; {
		case c == '(' && (i == 0 || msg[i-1] == ' '):
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	s := strings.Join(strings.Fields(b.String()), " ")
	s = strings.ReplaceAll(s, " :", ":")
	s = strings.ReplaceAll(s, " ;", ";")
	s = strings.ReplaceAll(s, " ,", ",")
	clauses := strings.Split(s, "; ")
	out := clauses[0]
	if len(clauses) > 1 && tookRE.MatchString(out) {
		out = clauses[1]
	}
	return storeHashRE.ReplaceAllString(out, "/nix/store/…-")
}

// The styles of the view; colour only repeats what the words say.
var (
	styleRun  = lipgloss.NewStyle().Bold(true)
	styleGood = lipgloss.NewStyle().Foreground(lipgloss.Green)
	styleBad  = lipgloss.NewStyle().Foreground(lipgloss.Red)
	styleBar  = lipgloss.NewStyle().Foreground(lipgloss.Cyan)
	styleDim  = lipgloss.NewStyle().Foreground(lipgloss.BrightBlack)
)

// resultOrder is the order in which results are counted.
var resultOrder = []fleet.Status{fleet.Deployed, fleet.UpToDate, fleet.RolledBack, fleet.Failed, fleet.Interrupted, fleet.Skipped}

func bad(st fleet.Status) bool {
	return st == fleet.Failed || st == fleet.RolledBack || st == fleet.Interrupted
}

// frame renders the live view: the run line, then one line per host as
// room allows. Every line is cut to width (0: no limit) and the frame is
// at most height-1 lines (0: no limit), so that it never scrolls.
func (s *liveState) frame(now time.Time, width, height int, color bool) string {
	lines := []string{s.runLine(now, false, color)}
	names := make([]string, 0, len(s.hosts))
	nameWidth := 4
	for n := range s.hosts {
		names = append(names, n)
		nameWidth = max(nameWidth, lipgloss.Width(n))
	}
	sort.Strings(names)
	room := len(names)
	if height > 0 && height < 3 { // room for the run line only
		return cut(lines[0], width)
	}
	if height > 0 && len(names) > height-2 {
		room = max(height-3, 0) // the run line, the line counting the others, the cursor's
	}
	// Working hosts first, then failed ones, then the latest finished.
	var working, failed, others []*liveHost
	for _, n := range names {
		switch h := s.hosts[n]; {
		case !h.finished:
			working = append(working, h)
		case bad(h.result):
			failed = append(failed, h)
		default:
			others = append(others, h)
		}
	}
	sort.SliceStable(others, func(i, j int) bool { return others[i].end.After(others[j].end) })
	var shown []*liveHost
	take := func(hs []*liveHost) (rest []*liveHost) {
		n := min(len(hs), room-len(shown))
		shown = append(shown, hs[:n]...)
		return hs[n:]
	}
	working, failed, others = take(working), take(failed), take(others)
	sort.Slice(shown, func(i, j int) bool { return shown[i].name < shown[j].name })
	for _, h := range shown {
		lines = append(lines, s.hostLine(h, nameWidth, width, now, color))
	}
	if hidden := len(working) + len(failed) + len(others); hidden > 0 {
		counts := map[fleet.Status]int{}
		for _, h := range append(failed, others...) {
			counts[h.result]++
		}
		var parts []string
		if len(working) > 0 {
			parts = append(parts, fmt.Sprintf("%d more working", len(working)))
		}
		for _, st := range resultOrder {
			if counts[st] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
			}
		}
		lines = append(lines, "  … "+strings.Join(parts, ", "))
	}
	for i, l := range lines {
		lines[i] = cut(l, width)
	}
	return strings.Join(lines, "\n")
}

// cut cuts a line to width cells, ending it with an ellipsis when it is
// longer; colour codes take no room and wide characters take two.
func cut(line string, width int) string {
	if width <= 0 || lipgloss.Width(line) <= width {
		return line
	}
	return ansi.Truncate(line, width, "…")
}

// runLine is the line of the whole run: its phase, the time since it
// started and an estimate of what is left, the hosts done of all by
// result, the bytes copied of the bytes to copy. final is the line left on
// the screen when the run has ended.
func (s *liveState) runLine(now time.Time, final bool, color bool) string {
	counts := map[fleet.Status]int{}
	done := 0
	var copied, toCopy int64
	copying := false
	var copyFrom time.Time
	for _, h := range s.hosts {
		if h.finished {
			done++
			counts[h.result]++
		}
		switch {
		case h.finished && !h.copied:
			// a copy that failed or was interrupted is not counted
		case h.copied:
			copied += h.total
			toCopy += h.total
		case h.total > 0:
			copied += h.done
			toCopy += h.total
			if !h.finished {
				copying = true
			}
		}
		if !h.copyAt.IsZero() && (copyFrom.IsZero() || h.copyAt.Before(copyFrom)) {
			copyFrom = h.copyAt
		}
	}
	total := max(s.total, len(s.hosts))
	phase := s.phase
	switch {
	case final && (s.stopped || counts[fleet.Interrupted] > 0):
		phase = "interrupted"
	case final && (phase == "evaluating" || strings.HasPrefix(phase, "building ")):
		phase = "stopped while " + phase
	case final:
		phase = "done"
	case s.stopped:
		phase = "interrupted"
	case total > 0 && done == total:
		phase = "finishing"
	case (phase == "" || phase == "connecting") && !s.deployAt.IsZero():
		phase = "deploying"
	case phase == "" && s.connecting():
		phase = "connecting"
	case phase == "" && total == 0:
		// Drawn before the run's first event.
		phase = "starting"
	}
	if phase == "deploying" && s.wave != "" {
		phase += " (" + s.wave + ")"
	}
	// By importance: a narrow screen cuts the end of the line.
	parts := []string{}
	if phase != "" {
		parts = append(parts, phase)
	}
	times := clock(now.Sub(s.start))
	if !final {
		left := "—"
		if d, ok := s.estimate(now, done, total, copied, toCopy, copying, copyFrom); ok {
			left = "~" + clock(d)
		}
		times += ", " + left + " left"
	}
	parts = append(parts, times)
	if total > 0 {
		hosts := fmt.Sprintf("%d/%d hosts", done, total)
		if done == 0 && s.deployAt.IsZero() { // nothing deployed yet, or a run that deploys nothing (build, diff)
			hosts = fmt.Sprintf("%d %s", total, plural(total, "host", "hosts"))
		}
		var rs []string
		for _, st := range resultOrder {
			if counts[st] > 0 {
				r := fmt.Sprintf("%d %s", counts[st], st)
				if color && bad(st) {
					r = styleBad.Render(r)
				}
				rs = append(rs, r)
			}
		}
		if len(rs) > 0 {
			hosts += ": " + strings.Join(rs, ", ")
		}
		parts = append(parts, hosts)
	}
	if toCopy > 0 {
		if final || copied == toCopy {
			parts = append(parts, human.Bytes(copied)+" copied")
		} else {
			parts = append(parts, fmt.Sprintf("%s of %s copied", human.Bytes(copied), human.Bytes(toCopy)))
		}
	}
	line := "skiff: " + strings.Join(parts, " · ")
	if color {
		line = styleRun.Render(line)
	}
	return line
}

// connecting: some host is being connected to.
func (s *liveState) connecting() bool {
	for _, h := range s.hosts {
		if !h.finished && h.phase == fleet.PhaseConnect && strings.HasPrefix(h.step, "connecting") {
			return true
		}
	}
	return false
}

// estimate is how long the run has left, once it can be known: from the
// rate at which hosts finish since the first one started deploying, and
// from the fleet's copy rate and the bytes left; the longer of the two.
func (s *liveState) estimate(now time.Time, done, total int, copied, toCopy int64, copying bool, copyFrom time.Time) (time.Duration, bool) {
	var est time.Duration
	known := false
	if done > 0 && done < total && !s.deployAt.IsZero() && now.After(s.deployAt) {
		est = time.Duration(float64(now.Sub(s.deployAt)) * float64(total-done) / float64(done))
		known = true
	}
	// nix copy tells progress path by path: the rate says little before
	// a twentieth has been copied.
	if copying && copied*20 >= toCopy && copied < toCopy && !copyFrom.IsZero() && now.After(copyFrom) {
		rate := float64(copied) / now.Sub(copyFrom).Seconds()
		est = max(est, time.Duration(float64(toCopy-copied)/rate*float64(time.Second)))
		known = true
	}
	return est, known
}

// hostLine is one host: its phase, the time since it started and its step
// (a bar with bytes and rate while it copies); once finished, its result,
// how long it took and, for a failure, why.
func (s *liveState) hostLine(h *liveHost, nameWidth, width int, now time.Time, color bool) string {
	name := h.name + strings.Repeat(" ", nameWidth-lipgloss.Width(h.name))
	if h.finished {
		res := string(h.result)
		if color {
			if bad(h.result) {
				res = styleBad.Render(res)
			} else {
				res = styleGood.Render(res)
			}
		}
		if h.result == fleet.Skipped {
			return fmt.Sprintf("  %s  %s: %s", name, res, h.reason)
		}
		line := fmt.Sprintf("  %s  %s in %s", name, res, clock(h.took))
		if h.result != fleet.Deployed && h.result != fleet.UpToDate {
			line = fmt.Sprintf("  %s  %s after %s", name, res, clock(h.took))
		}
		if h.reason != "" {
			line += ": " + h.reason
		}
		return line
	}
	step := h.step
	if h.phase == fleet.PhaseCopy && h.total > 0 && !h.copied {
		step = s.copyProgress(h, width-nameWidth-22, now, color)
	}
	return fmt.Sprintf("  %s  %-8s %6s  %s", name, h.phase, clock(now.Sub(h.start)), step)
}

// copyProgress is a bar, the bytes copied of the bytes to copy and the
// rate, in about room cells.
func (s *liveState) copyProgress(h *liveHost, room int, now time.Time, color bool) string {
	text := fmt.Sprintf("%s of %s", human.Bytes(h.done), human.Bytes(h.total))
	if el := now.Sub(h.copyAt); !h.copyAt.IsZero() && el >= time.Second && h.done > 0 {
		text += fmt.Sprintf(", %s/s", human.Bytes(int64(float64(h.done)/el.Seconds())))
	}
	barWidth := 20
	if room > 0 {
		barWidth = min(barWidth, room-lipgloss.Width(text)-1)
	}
	if barWidth < 5 {
		return text
	}
	full := int(int64(barWidth) * h.done / h.total)
	bar := strings.Repeat("█", full)
	rest := strings.Repeat("░", barWidth-full)
	if color {
		bar, rest = styleBar.Render(bar), styleDim.Render(rest)
	}
	return bar + rest + " " + text
}

// clock formats a duration for people: tenths of a second under a
// minute, whole seconds above.
func clock(d time.Duration) string {
	if d < time.Minute {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// takeNotices returns the lines to print above the view, once.
func (s *liveState) takeNotices() []string {
	n := s.notices
	s.notices = nil
	return n
}
