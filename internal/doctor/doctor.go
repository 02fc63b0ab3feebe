package doctor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/nix"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// Status is a check's outcome.
type Status string

// Outcomes. Skip is a check that did not apply or whose prerequisite failed.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Finding is one check's outcome on one host.
type Finding struct {
	Host   string      `json:"host"`
	Check  string      `json:"check"`
	Status Status      `json:"status"`
	Detail string      `json:"detail"`
	Hint   string      `json:"hint,omitempty"`
	Class  fault.Class `json:"class,omitempty"`
}

// Report is one host's findings, in check order.
type Report struct {
	Host     string    `json:"host"`
	Target   string    `json:"target"`
	Status   Status    `json:"status"` // the worst of the findings (ok, warn or fail)
	Findings []Finding `json:"checks"`
}

// Target is a host to diagnose.
type Target struct {
	Name   string           // the host's name in the flake
	Target transport.Target // where its ssh connection goes
	System string           // the configuration's platform, e.g. x86_64-linux; empty when unknown
	// BuildSystem is the platform the system's derivation is built on,
	// when it differs from System; empty means System.
	BuildSystem string
	// BuiltOn is where the system is built when not on this machine (a
	// build host, or the host itself: deployment.buildOnTarget); this
	// machine's platforms then do not matter.
	BuiltOn string
}

// Options configure a diagnosis.
type Options struct {
	SSH      transport.Options // ControlDir should be set: on-host checks share one connection
	Runner   *command.Runner
	Nix      *nix.Nix      // the local nix, for the build platform check
	Timeout  time.Duration // per host; 0 means 30s
	Parallel int           // hosts at once; 0 means 10
	// Flake and User are the run's flake URL and --target-user (empty
	// when the flake decides), for the skiff commands hints print.
	Flake, User string
}

// DefaultTimeout bounds each host's checks.
const DefaultTimeout = 30 * time.Second

// Run diagnoses every host and returns their reports in the given order.
func Run(ctx context.Context, o Options, hosts []Target) []Report {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Parallel <= 0 {
		o.Parallel = 10
	}
	o.SSH.ConnectTimeout = connectTimeout(o.Timeout)
	local := &localBuild{nix: o.Nix, run: o.Runner}
	reports := make([]Report, len(hosts))
	var g errgroup.Group
	g.SetLimit(o.Parallel)
	for i, t := range hosts {
		g.Go(func() error {
			reports[i] = runHost(ctx, o, checks, newSession(o, local, t))
			return nil
		})
	}
	_ = g.Wait()
	return reports
}

// connectTimeout is the time given to TCP connect and ssh's own
// ConnectTimeout: a third of the host's budget, 1s to 10s.
func connectTimeout(budget time.Duration) time.Duration {
	c := (budget / 3).Truncate(time.Second)
	return min(max(c, time.Second), 10*time.Second)
}

// check is one named diagnosis. needs names earlier checks that must not
// have failed.
type check struct {
	name  string
	needs []string
	local bool // runs on this machine, outside the host's time budget
	run   func(ctx context.Context, s *session) Finding
}

// checks are the layers, in order.
var checks = []check{
	{name: "ssh-config", run: checkSSHConfig},
	{name: "dns", needs: []string{"ssh-config"}, run: checkDNS},
	{name: "tcp", needs: []string{"dns"}, run: checkTCP},
	{name: "ssh-banner", needs: []string{"tcp"}, run: checkBanner},
	{name: "host-key", needs: []string{"ssh-banner"}, run: checkHostKey},
	{name: "auth", needs: []string{"host-key"}, run: checkAuth},
	{name: "sudo", needs: []string{"auth"}, run: checkSudo},
	{name: "nix", needs: []string{"auth"}, run: checkNix},
	{name: "store", needs: []string{"nix", "sudo"}, run: checkStore},
	{name: "disk", needs: []string{"auth"}, run: checkDisk},
	{name: "units", needs: []string{"auth"}, run: checkUnits},
	{name: "activation-lock", needs: []string{"auth"}, run: checkLocks},
	{name: "platform", needs: []string{"auth"}, run: checkPlatform},
	{name: "local-build", local: true, run: checkLocalBuild},
}

// runHost runs list on one host within o.Timeout.
func runHost(ctx context.Context, o Options, list []check, s *session) Report {
	hctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	defer s.close()
	t := s.t
	rep := Report{Host: t.Name, Target: t.Target.String(), Status: OK}
	blocked := map[string]string{} // check → why its dependents are skipped
	for _, c := range list {
		f := Finding{Host: t.Name, Check: c.name}
		why := ""
		for _, n := range c.needs {
			if b, ok := blocked[n]; ok {
				why = b
				break
			}
		}
		cctx := hctx
		if c.local {
			cctx = ctx
		}
		switch {
		case why != "":
			f.Status, f.Detail = Skip, why
			blocked[c.name] = why
		case cctx.Err() != nil:
			f.Status, f.Detail = Skip, fmt.Sprintf("not run: the host's time limit (%s) was reached", o.Timeout)
			blocked[c.name] = f.Detail
		default:
			r := c.run(cctx, s)
			r.Host, r.Check = t.Name, c.name
			if r.Status == Fail && !c.local && errors.Is(hctx.Err(), context.DeadlineExceeded) && r.Class == "" {
				r.Class = fault.Timeout
				r.Detail = fmt.Sprintf("did not finish within the host's time limit (%s): %s", o.Timeout, r.Detail)
			}
			f = r
			if f.Status == Fail {
				blocked[c.name] = c.name + " failed"
			}
		}
		rep.Findings = append(rep.Findings, f)
		switch {
		case f.Status == Fail:
			rep.Status = Fail
		case f.Status == Warn && rep.Status == OK:
			rep.Status = Warn
		}
	}
	return rep
}

func ok(format string, args ...any) Finding {
	return Finding{Status: OK, Detail: fmt.Sprintf(format, args...)}
}

func warn(hint, format string, args ...any) Finding {
	return Finding{Status: Warn, Hint: hint, Detail: fmt.Sprintf(format, args...)}
}

func skip(format string, args ...any) Finding {
	return Finding{Status: Skip, Detail: fmt.Sprintf(format, args...)}
}

// failed turns a classified error into a failing finding.
func failed(err error) Finding {
	if fe, ok := fault.As(err); ok {
		return Finding{Status: Fail, Detail: fe.Msg, Hint: fe.Hint, Class: fe.Class}
	}
	return Finding{Status: Fail, Detail: err.Error()}
}
