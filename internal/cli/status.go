package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/fleet"
	"github.com/skiffdeploy/skiff/internal/history"
	"github.com/skiffdeploy/skiff/internal/remote"
)

type statusOptions struct {
	targetUser string
	targetHost string
	parallel   int
	timeout    time.Duration
	json       bool
}

func newStatus(g *globals) *cobra.Command {
	var o statusOptions
	c := &cobra.Command{
		Use:   "status [HOST|GLOB|@TAG...]",
		Short: "Show what each host runs, whether it matches the flake, and its health",
		Long: `Status evaluates the flake once (nothing is built), connects to every
selected host in parallel and prints one table: whether the host is
reachable (or the class of the error), the system it runs and the
generation of its system profile ("profile N" when the profile points
elsewhere than the running system), whether that system is the one the flake evaluates to now
(FLAKE: "matches" when the host runs it and boots it by default, as after
skiff deploy; "runs, not boot default" when it runs it but its system
profile, which the boot loader starts, is another (a deploy in mode test:
skiff deploy would still set the profile); "next boot" when the system
profile has it but the host does not run it yet; else "drift"), systemctl is-system-running, the
number of failed units, the host's last successful deploy from the
history, and REBOOT: "needed" when the running system's kernel, initrd or
kernel modules are not the booted ones (NixOS hosts). --json prints the
same as JSON Lines, one object per host.
Nothing on the hosts is changed.

Exit codes:
  0    every host is reachable and its state was read
  1    error before any host was touched (flake, nix)
  2    usage error
  3    some host is unreachable or its state could not be read
  130  interrupted`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(cmd.Context(), g, o, args)
		},
	}
	f := c.Flags()
	f.StringVar(&o.targetUser, "target-user", "", "log in as `USER` on every host (default: deployment.targetUser, else root)")
	addTargetHostFlag(f, &o.targetHost)
	f.IntVarP(&o.parallel, "parallel", "p", 10, "query at most `N` hosts at once")
	f.DurationVar(&o.timeout, "timeout", 10*time.Second, "time allowed to connect to each host")
	f.BoolVar(&o.json, "json", false, "print JSON Lines on stdout, one object per host")
	return withOn(c)
}

// hostStatus is what status found out about one host.
type hostStatus struct {
	host      flake.Host
	reachable bool
	stateOK   bool // state was read
	state     remote.State
	health    *remote.Health // nil when not read
	boot      *remote.Boot   // nil when not read (and on nix-darwin hosts)
	last      *history.Entry
	err       error
}

// connectClasses are the errors that mean skiff could not log in.
var connectClasses = map[fault.Class]bool{
	fault.DNS: true, fault.Refused: true, fault.Timeout: true, fault.Unreach: true,
	fault.HostKey: true, fault.Auth: true, fault.SSH: true,
}

func runStatus(ctx context.Context, g *globals, o statusOptions, selectors []string) error {
	if err := checkHostFlags(o.parallel, o.targetUser); err != nil {
		return err
	}
	if err := checkTargetHost(o.targetHost); err != nil {
		return err
	}
	if o.timeout < time.Second {
		return usageError{errorf("--timeout must be at least 1s (ssh counts its ConnectTimeout in seconds)")}
	}
	rc, err := g.reach(selectors)
	if err != nil {
		return err
	}
	defer rc.close()
	run := g.runner()
	fo := g.hostOptions(rc, run, selectors, o.targetUser, o.targetHost, o.parallel)
	fo.SSH.ConnectTimeout = o.timeout
	fo.Reporter = quietReporter{}
	s, err := fleet.Prepare(ctx, fo, false)
	if err != nil {
		return err
	}
	defer s.Close()

	// The probe at connect time read all a row needs: no other command
	// runs on the hosts.
	hosts := s.Hosts()
	rows := make([]hostStatus, len(hosts))
	for i, h := range hosts {
		rows[i] = hostStatus{host: h}
		if err := s.Err(h.Name); err != nil {
			rows[i].err = err
			rows[i].reachable = !connectClasses[fault.ClassOf(err)]
			continue
		}
		st := s.State(h.Name)
		rows[i].reachable, rows[i].stateOK = true, true
		rows[i].state = st
		rows[i].health = &st.Health
		if !h.Darwin() {
			rows[i].boot = &st.Boot
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	addLastDeploys(ctx, g, rows)

	if o.json {
		if err := writeStatusJSON(g.stdout, rows); err != nil {
			return err
		}
	} else {
		statusTable(g.stdout, rows, time.Now())
	}
	code := ExitOK
	for _, r := range rows {
		if r.err != nil {
			printError(g.stderr, r.err)
			code = ExitHostsFailed
		}
	}
	if code != ExitOK {
		return exitError{code}
	}
	return nil
}

// addLastDeploys fills in each host's last successful deploy from the
// history, when there is one; a history that cannot be read is a warning.
func addLastDeploys(ctx context.Context, g *globals, rows []hostStatus) {
	db, err := g.openHistoryIfExists(ctx)
	if err != nil {
		fmt.Fprintf(g.stderr, "skiff: warning: cannot read the history: %v\n", err)
		return
	}
	if db == nil {
		return
	}
	defer db.Close()
	names := make([]string, len(rows))
	for i, r := range rows {
		names[i] = r.host.Name
	}
	dep, err := db.Deployed(ctx, names...)
	if err != nil {
		fmt.Fprintf(g.stderr, "skiff: warning: cannot read the history: %v\n", err)
		return
	}
	for i := range rows {
		if e, ok := dep[rows[i].host.Name]; ok {
			rows[i].last = &e
		}
	}
}

// quietReporter drops progress events: status prints only its table.
type quietReporter struct{}

func (quietReporter) Event(fleet.Event) {}

// flakeMatch compares what the host runs with what the flake evaluates to.
func (r hostStatus) flakeMatch() string {
	switch {
	case !r.stateOK:
		return "-"
	case r.state.UpToDate("switch", r.host.OutPath):
		return "matches"
	case r.state.RunsNotBoots(r.host.OutPath):
		// A deploy in mode test: the host boots its old profile.
		return "runs, not boot default"
	case r.state.Profile == r.host.OutPath:
		return "next boot"
	}
	return "drift"
}

func statusTable(w io.Writer, rows []hostStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tREACHABLE\tSYSTEM\tGENERATION\tFLAKE\tSTATE\tFAILED\tLAST DEPLOY\tREBOOT")
	for _, r := range rows {
		reach := "yes"
		if !r.reachable {
			reach = "no (" + string(fault.ClassOf(r.err)) + ")"
		} else if r.err != nil {
			reach = "yes (" + string(classOf(r.err)) + ")"
		}
		system, gen := "-", "-"
		if r.stateOK {
			system, gen = shortPath(r.state.Current), orDash(r.state.Generation)
			if r.state.Generation > 0 && r.state.Current != r.state.Profile {
				// The profile moved on (boot, or a switch that failed).
				gen = "profile " + gen
			}
		}
		state, failed := "-", "-"
		if r.health != nil {
			if r.health.State != "" {
				state = r.health.State
			}
			failed = fmt.Sprint(len(r.health.Failed))
		}
		last := "-"
		if r.last != nil {
			last = fmt.Sprintf("%s by %s", ago(now.Sub(r.last.Run.Finished)), r.last.Run.Who)
			if r.last.Host.NewGen > 0 {
				last = fmt.Sprintf("gen %d, %s", r.last.Host.NewGen, last)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.host.Name, reach, system, gen, r.flakeMatch(), state, failed, last, rebootColumn(r.boot))
	}
	tw.Flush()
}

func classOf(err error) fault.Class {
	if c := fault.ClassOf(err); c != "" {
		return c
	}
	return "error"
}

// statusJSON is one line of "skiff status --json". Fields are only ever
// added, never repurposed.
type statusJSON struct {
	Host         string          `json:"host"`
	Reachable    bool            `json:"reachable"`
	CurrentPath  string          `json:"current_path,omitempty"`
	ProfilePath  string          `json:"profile_path,omitempty"`
	Generation   int             `json:"profile_generation,omitempty"` // of the system profile; see profile_path
	FlakePath    string          `json:"flake_path"`
	MatchesFlake *bool           `json:"matches_flake"` // the running system is the flake's; null when unknown
	SystemState  string          `json:"system_state,omitempty"`
	FailedUnits  []string        `json:"failed_units"` // null when unknown
	LastDeploy   *lastDeployJSON `json:"last_deploy,omitempty"`
	ErrorClass   string          `json:"error_class,omitempty"`
	Error        string          `json:"error,omitempty"`
	Hint         string          `json:"hint,omitempty"`

	RebootRequired *bool `json:"reboot_required"` // null when unknown and on nix-darwin hosts
	// UpToDate: a deploy (switch) would change nothing: the host runs
	// the flake's system and boots it by default. Null when unknown.
	UpToDate *bool `json:"up_to_date"`
}

type lastDeployJSON struct {
	Run        int64  `json:"run"`
	Time       string `json:"time"` // when the run finished, RFC 3339
	Who        string `json:"who"`
	Command    string `json:"command"`
	Mode       string `json:"mode"`
	Path       string `json:"path"`
	Generation int    `json:"generation,omitempty"`
	Revision   string `json:"revision,omitempty"`
	Dirty      bool   `json:"dirty"`
}

func toStatusJSON(r hostStatus) statusJSON {
	j := statusJSON{Host: r.host.Name, Reachable: r.reachable, FlakePath: r.host.OutPath}
	if r.stateOK {
		j.CurrentPath, j.ProfilePath, j.Generation = r.state.Current, r.state.Profile, r.state.Generation
		m, u := r.state.Current == r.host.OutPath, r.state.UpToDate("switch", r.host.OutPath)
		j.MatchesFlake, j.UpToDate = &m, &u
	}
	if r.health != nil {
		j.SystemState = r.health.State
		j.FailedUnits = []string{}
		for _, u := range r.health.Failed {
			j.FailedUnits = append(j.FailedUnits, u.Unit)
		}
	}
	if r.boot != nil {
		req := r.boot.RebootRequired()
		j.RebootRequired = &req
	}
	if e := r.last; e != nil {
		j.LastDeploy = &lastDeployJSON{Run: e.Run.ID, Time: e.Run.Finished.Format(time.RFC3339Nano), Who: e.Run.Who,
			Command: e.Run.Command, Mode: e.Run.Mode, Path: e.Host.NewPath, Generation: e.Host.NewGen,
			Revision: e.Run.Revision, Dirty: e.Run.Dirty}
	}
	if r.err != nil {
		j.ErrorClass = string(classOf(r.err))
		j.Error = r.err.Error()
		if fe, ok := fault.As(r.err); ok {
			j.Error, j.Hint = fe.Msg, fe.Hint
		}
	}
	return j
}

func writeStatusJSON(w io.Writer, rows []hostStatus) error {
	enc := json.NewEncoder(w)
	for _, r := range rows {
		if err := enc.Encode(toStatusJSON(r)); err != nil {
			return err
		}
	}
	return nil
}
