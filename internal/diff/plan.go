package diff

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/skiffdeploy/skiff/internal/activate"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/fleet"
	"github.com/skiffdeploy/skiff/internal/human"
	"github.com/skiffdeploy/skiff/internal/remote"
)

// PhasePlan is the phase of the events Plan reports.
const PhasePlan fleet.Phase = "plan"

// Plan works out, for every host of a prepared (built and connected)
// session, at most parallel hosts at once, what deploying would change.
// It copies the paths a host lacks so that dry-activate can run, and
// changes nothing else: no profile, no generation, no activation.
func Plan(ctx context.Context, s *fleet.Session, parallel int) []HostPlan {
	if parallel <= 0 {
		parallel = 10
	}
	hosts := s.Hosts()
	plans := make([]HostPlan, len(hosts))
	var g errgroup.Group
	g.SetLimit(parallel)
	for i, h := range hosts {
		g.Go(func() error {
			plans[i] = planHost(ctx, s, h)
			return nil
		})
	}
	_ = g.Wait()
	return plans
}

func planHost(ctx context.Context, s *fleet.Session, h flake.Host) HostPlan {
	p := HostPlan{Host: h.Name, NewSystem: h.OutPath}
	fail := func(err error) HostPlan {
		p.Status, p.Err = Failed, err
		msg := err.Error()
		if fe, ok := fault.As(err); ok {
			msg = fe.Msg
		}
		s.Report(h.Name, PhasePlan, "failed: %s", msg)
		return p
	}
	if err := s.Err(h.Name); err != nil {
		p.Status, p.Err = Failed, err
		return p // Prepare reported it already
	}
	st := s.State(h.Name)
	p.OldSystem = st.Current
	switch {
	case st.UpToDate("switch", h.OutPath):
		p.Status = UpToDate
		s.Report(h.Name, PhasePlan, "up to date: runs %s and boots it by default", h.OutPath)
		return p
	case st.RunsNotBoots(h.OutPath):
		// A deploy in mode test left it so: the host runs the new system
		// but would boot another. A deploy sets the profile and the boot
		// entry, and activates nothing.
		p.Status, p.SetsBootDefault, p.BootDefault = Changes, true, st.Profile
		line, _ := Describe(p)
		s.Report(h.Name, PhasePlan, "%s", line)
		return p
	}
	p.Status = Changes
	c := s.Remote(h.Name)

	var newClosure []Path
	var paths []string
	sizes := map[string]int64{}
	for _, i := range s.Closure(h.Name) {
		newClosure = append(newClosure, Path{Path: i.Path, Size: i.NarSize})
		paths = append(paths, i.Path)
		sizes[i.Path] = i.NarSize
	}
	// The new system stays rooted on the host from this query until
	// dry-activate has run, so that a garbage collection cannot take it
	// (or what is copied of it) in between.
	root := remote.Root{ID: activate.NewID(time.Now()), Path: h.OutPath}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := c.Unroot(uctx, root); err != nil {
			s.Report(h.Name, PhasePlan, "could not remove the GC root %s (it goes at the next reboot): %v", root.Link(), err)
		}
	}()
	running, store, err := c.Compare(ctx, st.Current, paths, root)
	if err != nil {
		return fail(err)
	}
	var oldClosure []Path
	for _, sp := range running {
		oldClosure = append(oldClosure, Path{Path: sp.Path, Size: sp.Size})
	}
	p.Closure = Compare(st.Current, oldClosure, h.OutPath, newClosure)

	if h.Kind == flake.KindDarwin {
		// nix-darwin has no dry-activate: the closure difference is the plan.
		line, _ := Describe(p)
		s.Report(h.Name, PhasePlan, "%s", line)
		return p
	}
	if _, err := os.Stat(filepath.Join(h.OutPath, "bin", "switch-to-configuration")); err != nil {
		return fail(fault.New(h.Name, fault.Build,
			"nixosConfigurations.NAME.config.system.build.toplevel must be a NixOS system",
			"%s has no bin/switch-to-configuration; cannot tell what activating it would do", h.OutPath))
	}
	for _, m := range store.Missing {
		p.CopiedBytes += sizes[m]
	}
	if store.Free >= 0 && p.CopiedBytes > 0 && p.CopiedBytes+fleet.DiskMargin > store.Free {
		return fail(fault.New(h.Name, fault.Disk, s.DiskHint(h.Name),
			"needs %s in /nix/store to check activation, %s free (keeping %s spare); nothing was copied",
			human.Bytes(p.CopiedBytes), human.Bytes(store.Free), human.Bytes(fleet.DiskMargin)))
	}
	if len(store.Missing) > 0 {
		s.Report(h.Name, PhasePlan, "copying %d missing path(s), %s, to run dry-activate", len(store.Missing), human.Bytes(p.CopiedBytes))
		start := time.Now()
		if err := s.Copy(ctx, h.Name, h.OutPath, store.Missing, sizes, p.CopiedBytes); err != nil {
			p.CopiedBytes = 0
			return fail(err)
		}
		p.CopiedPaths = len(store.Missing)
		s.Report(h.Name, PhasePlan, "copied in %s", time.Since(start).Round(time.Millisecond))
	}

	act, err := c.DryActivate(ctx, h.OutPath)
	if err != nil {
		return fail(err)
	}
	if act.ExitCode != 0 {
		return fail(fault.New(h.Name, fault.Activation,
			fmt.Sprintf("run it by hand to see its output: \"%s\"", c.Conn.ByHand(c.PrivArgv(h.OutPath+"/bin/switch-to-configuration", "dry-activate")...)),
			"switch-to-configuration dry-activate exited with %d (%s)", act.ExitCode, remote.ActivationMeaning(act.ExitCode)))
	}
	p.Units = ParseDryActivate(act.Output)
	p.Activation = true
	line, _ := Describe(p)
	s.Report(h.Name, PhasePlan, "%s", line)
	return p
}
