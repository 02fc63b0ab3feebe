package cli

import (
	"os"

	"golang.org/x/term"

	"github.com/skiffdeploy/skiff/internal/fleet"
	"github.com/skiffdeploy/skiff/internal/ui"
)

// output is how a fleet command shows progress and results: a live view
// on a terminal, plain timestamped lines otherwise (or when CI is set, or
// with -x), JSON Lines on stdout with --json.
type output struct {
	reporter fleet.Reporter
	close    func()
	summary  func(results []fleet.Result, code int)
}

func (g *globals) output(jsonOut bool) output {
	if jsonOut {
		j := &ui.JSON{W: g.stdout}
		return output{reporter: j, close: func() {}, summary: j.Summary}
	}
	table := func(results []fleet.Result, _ int) { ui.Summary(g.stdout, results) }
	// The -x trace prints commands as they run: it goes with plain lines.
	if f, ok := g.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("CI") == "" && !g.trace {
		color := os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
		l := ui.NewLive(f, color)
		return output{reporter: l, close: l.Close, summary: table}
	}
	return output{reporter: &ui.Plain{W: g.stderr}, close: func() {}, summary: table}
}
