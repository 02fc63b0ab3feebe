package ui

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/skiffdeploy/skiff/internal/fleet"
	"github.com/skiffdeploy/skiff/internal/human"
)

// Plain prints one timestamped line per event: "15:04:05 web1: copy: ...".
type Plain struct {
	W  io.Writer
	mu sync.Mutex
}

// Event implements fleet.Reporter.
func (p *Plain) Event(e fleet.Event) {
	if e.Progress {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ts := e.Time.Format("15:04:05")
	switch {
	case e.Output:
		fmt.Fprintf(p.W, "%s %s| %s\n", ts, e.Host, e.Msg)
	case e.Host == "":
		fmt.Fprintf(p.W, "%s skiff: %s: %s\n", ts, e.Phase, e.Msg)
	default:
		fmt.Fprintf(p.W, "%s %s: %s: %s\n", ts, e.Host, e.Phase, e.Msg)
	}
}

// Summary prints the result table.
func Summary(w io.Writer, results []fleet.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tRESULT\tGENERATION\tCOPIED\tDURATION\tERROR")
	for _, r := range results {
		errcol := string(r.Class())
		switch {
		case r.Status == fleet.Skipped:
			errcol = r.Note
		case r.Note != "" && errcol == "":
			errcol = r.Note // a host whose activation an interrupt let finish
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Host, r.Status, generations(r), copied(r),
			duration(r), errcol)
	}
	tw.Flush()
}

func duration(r fleet.Result) string {
	if r.Status == fleet.Skipped || r.Duration == 0 {
		return "-"
	}
	return r.Duration.Round(10 * time.Millisecond).String()
}

func generations(r fleet.Result) string {
	old := "-"
	if r.OldGen > 0 {
		old = fmt.Sprint(r.OldGen)
	}
	switch {
	case r.Status == fleet.UpToDate:
		return old
	case r.NewGen > 0:
		return fmt.Sprintf("%s -> %d", old, r.NewGen)
	case r.Status == fleet.Deployed && (r.Mode == fleet.Test || r.Mode == fleet.DryActivate):
		return old + " (" + string(r.Mode) + ": none made)"
	}
	return old
}

// copied is what was copied to the host: "-" when nothing was (nothing
// was missing, or the copy was refused, failed or was interrupted).
func copied(r fleet.Result) string {
	if r.CopiedPaths == 0 {
		return "-"
	}
	return fmt.Sprintf("%d paths, %s", r.CopiedPaths, strings.ReplaceAll(human.Bytes(r.CopiedBytes), " ", ""))
}
