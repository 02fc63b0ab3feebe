package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/history"
)

type historyOptions struct {
	json     bool
	limit    int
	deployed bool
}

func newHistory(g *globals) *cobra.Command {
	var o historyOptions
	c := &cobra.Command{
		Use:   "history [HOST]",
		Short: "Show past deploys: who deployed what, where, when, and how it went",
		Long: `History lists the runs skiff recorded, newest first, one row per host:
when, who (user@machine), the result, the generation change, the system, the
flake revision (with "-dirty" when the work tree had uncommitted changes),
the duration and the error. With HOST, only that host's rows.

--deployed answers "what is deployed where, since when and by whom": each
host's latest successful deploy (dry activations left out).

The history is an SQLite database at --history PATH, else $SKIFF_HISTORY,
else $XDG_STATE_HOME/skiff/history.db (default ~/.local/state/skiff/history.db).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runHistory(cmd.Context(), g, o, args)
		},
	}
	f := c.Flags()
	f.BoolVar(&o.json, "json", false, "print JSON Lines on stdout, one object per host of a run")
	f.IntVarP(&o.limit, "limit", "n", 20, "show at most `N` rows (0: all)")
	f.BoolVar(&o.deployed, "deployed", false, "show each host's latest successful deploy only")
	return withOn(c)
}

// historyPath is where the history database lives: --history, else
// $SKIFF_HISTORY, else the XDG state directory.
func (g *globals) historyPath() (string, error) {
	if g.history != "" {
		return g.history, nil
	}
	if p := os.Getenv("SKIFF_HISTORY"); p != "" {
		return p, nil
	}
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "skiff", "history.db"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return "", fault.New("", "", "set HOME, or choose the history file with --history PATH or SKIFF_HISTORY",
			"cannot find the history database: no home directory")
	}
	return filepath.Join(home, ".local", "state", "skiff", "history.db"), nil
}

// openHistoryIfExists opens the history database for reading; it returns
// nil (and no error) when there is none yet, rather than creating one.
func (g *globals) openHistoryIfExists(ctx context.Context) (*history.DB, error) {
	path, err := g.historyPath()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return history.Open(ctx, path)
}

func runHistory(ctx context.Context, g *globals, o historyOptions, args []string) error {
	var host string
	if len(args) == 1 {
		host = args[0]
		if !flake.ValidName(host) {
			return usageError{errorf("invalid host name %q: host names are flake attribute names (letters, digits, '_', '.', '-')", host)}
		}
	}
	if o.limit < 0 {
		return usageError{errorf("--limit must not be negative")}
	}
	db, err := g.openHistoryIfExists(ctx)
	if err != nil {
		return err
	}
	var entries []history.Entry
	if db != nil {
		defer db.Close()
		if o.deployed {
			var hosts []string
			if host != "" {
				hosts = []string{host}
			}
			dep, err := db.Deployed(ctx, hosts...)
			if err != nil {
				return err
			}
			entries = sortedEntries(dep)
			if o.limit > 0 && len(entries) > o.limit {
				entries = entries[:o.limit]
			}
		} else if entries, err = db.Entries(ctx, history.Filter{Host: host, Limit: o.limit}); err != nil {
			return err
		}
	}
	if len(entries) == 0 {
		what := "no runs recorded"
		if host != "" {
			what += " for " + host
		}
		path, _ := g.historyPath()
		fmt.Fprintf(g.stderr, "skiff: %s in %s\n", what, path)
	}
	switch {
	case o.json:
		return writeHistoryJSON(g.stdout, entries)
	case len(entries) == 0:
		return nil
	case o.deployed:
		deployedTable(g.stdout, entries, time.Now())
	default:
		historyTable(g.stdout, entries)
	}
	return nil
}

func sortedEntries(m map[string]history.Entry) []history.Entry {
	var es []history.Entry
	for _, e := range m {
		es = append(es, e)
	}
	// Newest deploy first, as the rest of the history.
	sort.Slice(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if !a.Run.Finished.Equal(b.Run.Finished) {
			return a.Run.Finished.After(b.Run.Finished)
		}
		if a.Run.ID != b.Run.ID {
			return a.Run.ID > b.Run.ID
		}
		return a.Host.Name < b.Host.Name
	})
	return es
}

// historyJSON is one line of "skiff history --json". Fields are only ever
// added, never repurposed; the names match deploy's JSON summary.
type historyJSON struct {
	Run           int64            `json:"run"`
	Time          string           `json:"time"` // run start, RFC 3339
	Finished      string           `json:"finished"`
	Who           string           `json:"who"`
	Command       string           `json:"command"`
	Flake         string           `json:"flake"`
	Revision      string           `json:"revision,omitempty"`
	Dirty         bool             `json:"dirty"`
	Mode          string           `json:"mode"`
	ExitCode      int              `json:"exit_code"`
	Host          string           `json:"host"`
	Result        string           `json:"result"`
	OldPath       string           `json:"old_path,omitempty"`
	NewPath       string           `json:"new_path,omitempty"`
	OldGeneration int              `json:"old_generation,omitempty"`
	NewGeneration int              `json:"new_generation,omitempty"`
	DurationMS    int64            `json:"duration_ms"`
	PhasesMS      map[string]int64 `json:"phases_ms,omitempty"`
	ErrorClass    string           `json:"error_class,omitempty"`
	Error         string           `json:"error,omitempty"`
	Note          string           `json:"note,omitempty"`
}

func toHistoryJSON(e history.Entry) historyJSON {
	j := historyJSON{Run: e.Run.ID, Time: e.Run.Started.Format(time.RFC3339Nano), Finished: e.Run.Finished.Format(time.RFC3339Nano),
		Who: e.Run.Who, Command: e.Run.Command, Flake: e.Run.Flake, Revision: e.Run.Revision, Dirty: e.Run.Dirty,
		Mode: e.Run.Mode, ExitCode: e.Run.ExitCode, Host: e.Host.Name, Result: e.Host.Result,
		OldPath: e.Host.OldPath, NewPath: e.Host.NewPath, OldGeneration: e.Host.OldGen, NewGeneration: e.Host.NewGen,
		DurationMS: e.Host.Duration.Milliseconds(), ErrorClass: e.Host.ErrorClass, Error: e.Host.Error, Note: e.Host.Note}
	if len(e.Host.Phases) > 0 {
		j.PhasesMS = map[string]int64{}
		for p, d := range e.Host.Phases {
			j.PhasesMS[p] = d.Milliseconds()
		}
	}
	return j
}

func writeHistoryJSON(w io.Writer, entries []history.Entry) error {
	enc := json.NewEncoder(w)
	for _, e := range entries {
		if err := enc.Encode(toHistoryJSON(e)); err != nil {
			return err
		}
	}
	return nil
}

func historyTable(w io.Writer, entries []history.Entry) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN\tWHO\tHOST\tRESULT\tGENERATION\tSYSTEM\tREVISION\tDURATION\tERROR")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			e.Run.Started.Local().Format("2006-01-02 15:04:05"), e.Run.Who, e.Host.Name, e.Host.Result,
			historyGenerations(e), shortPath(e.Host.NewPath), runRevision(e.Run), e.Host.Duration.Round(100*time.Millisecond),
			historyError(e.Host))
	}
	tw.Flush()
}

func deployedTable(w io.Writer, entries []history.Entry, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tGENERATION\tSYSTEM\tSINCE\tWHO\tREVISION\tMODE")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Host.Name, orDash(e.Host.NewGen), shortPath(e.Host.NewPath),
			e.Run.Finished.Local().Format("2006-01-02 15:04:05")+" ("+ago(now.Sub(e.Run.Finished))+")",
			e.Run.Who, runRevision(e.Run), e.Run.Mode)
	}
	tw.Flush()
}

func orDash(n int) string {
	if n <= 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

func historyGenerations(e history.Entry) string {
	old := orDash(e.Host.OldGen)
	switch {
	case e.Host.Result == history.UpToDate:
		return old
	case e.Host.NewGen > 0 && e.Host.NewGen != e.Host.OldGen:
		return old + " -> " + fmt.Sprint(e.Host.NewGen)
	}
	return old
}

// shortPath shows a store path as HASH(8)-NAME: enough to tell systems
// apart at a glance; --json has the whole path.
func shortPath(p string) string {
	if p == "" {
		return "-"
	}
	base := filepath.Base(p)
	hash, name, ok := strings.Cut(base, "-")
	if !ok || len(hash) < 8 {
		return base
	}
	return hash[:8] + "-" + name
}

func runRevision(r history.Run) string {
	rev := r.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	switch {
	case rev == "":
		return "-"
	case r.Dirty:
		return rev + "-dirty"
	}
	return rev
}

func historyError(h history.Host) string {
	msg := h.Error
	if msg == "" {
		msg = h.Note
	}
	msg, _, _ = strings.Cut(msg, "\n")
	if r := []rune(msg); len(r) > 60 {
		msg = string(r[:57]) + "..."
	}
	switch {
	case h.ErrorClass != "" && msg != "":
		return h.ErrorClass + ": " + msg
	case h.ErrorClass != "":
		return h.ErrorClass
	}
	return msg
}

// ago says how long ago something happened, for people.
func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}
