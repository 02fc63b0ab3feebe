package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/remote"
)

// DiskMargin is kept free on a host's store filesystem beyond what a copy
// needs, so that activation and the database still have room.
const DiskMargin = 16 << 20

// Deploy runs a deploy. The error is for failures of the whole run
// (evaluation, bad input); each host's outcome is in its Result.
func Deploy(ctx context.Context, o Options) ([]Result, error) {
	s, err := Prepare(ctx, o, true)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if o.BeforeDeploy != nil {
		proceed, err := o.BeforeDeploy(ctx, s)
		if err != nil || !proceed {
			return nil, err
		}
	}
	r := s.run
	results := make([]Result, len(r.hosts))
	var wg sync.WaitGroup
	sem := make(chan struct{}, r.Parallel)
	for i, h := range r.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i] = r.deployHost(ctx, h)
		}()
	}
	wg.Wait()
	return results, nil
}

func (r *run) deployHost(ctx context.Context, h flake.Host) Result {
	start := time.Now()
	res := Result{Host: h.Name, Mode: r.Mode, NewPath: h.OutPath}
	finish := func(status Status, err error) Result {
		res.Status, res.Err, res.Duration = status, err, time.Since(start)
		switch status {
		case Failed, RolledBack:
			msg := err.Error()
			if fe, ok := fault.As(err); ok {
				msg = fe.Msg
			}
			r.report(h.Name, PhaseDone, "%s: %s", status, msg)
		default:
			r.report(h.Name, PhaseDone, "%s in %s", status, since(start))
		}
		return res
	}
	r.mu.Lock()
	err := r.errs[h.Name]
	st := r.states[h.Name]
	closure := r.closures[h.Name]
	r.mu.Unlock()
	if err != nil {
		return finish(Failed, err)
	}
	c := r.conns[h.Name]
	res.OldPath, res.OldGen = st.Current, st.Generation

	if !r.Force && upToDate(r.Mode, st, h.OutPath) {
		res.NewGen = st.Generation
		return finish(UpToDate, nil)
	}
	if _, err := os.Stat(filepath.Join(h.OutPath, "nixos-version")); err != nil && r.Mode != DryActivate {
		return finish(Failed, fault.New(h.Name, fault.Build,
			"nixosConfigurations.NAME.config.system.build.toplevel must be a NixOS system",
			"%s is not a NixOS system (no nixos-version); refusing to activate it", h.OutPath))
	}

	// Copy what the host lacks.
	var paths []string
	var sizes = map[string]int64{}
	for _, p := range closure {
		paths = append(paths, p.Path)
		sizes[p.Path] = p.NarSize
	}
	store, err := c.QueryStore(ctx, paths)
	if err != nil {
		return finish(Failed, err)
	}
	for _, p := range store.Missing {
		res.CopiedBytes += sizes[p]
	}
	res.CopiedPaths = len(store.Missing)
	if store.Free >= 0 && res.CopiedBytes > 0 && res.CopiedBytes+DiskMargin > store.Free {
		return finish(Failed, fault.New(h.Name, fault.Disk,
			fmt.Sprintf("free space on the host: delete old generations and collect garbage (\"ssh %s sudo nix-env -p %s --delete-generations +5 && ssh %s sudo nix-collect-garbage\")",
				c.Conn.Target.Destination(), remote.Profile, c.Conn.Target.Destination()),
			"needs %s in /nix/store, %s free (keeping %s spare); nothing was copied",
			Bytes(res.CopiedBytes), Bytes(store.Free), Bytes(DiskMargin)))
	}
	if len(store.Missing) > 0 {
		r.report(h.Name, PhaseCopy, "copying %d path(s), %s", len(store.Missing), Bytes(res.CopiedBytes))
		cs := time.Now()
		if err := r.copy(ctx, c, h.OutPath); err != nil {
			return finish(Failed, err)
		}
		r.report(h.Name, PhaseCopy, "copied in %s", since(cs))
	} else {
		r.report(h.Name, PhaseCopy, "nothing to copy")
	}

	status, err := r.activate(ctx, c, h, st, &res)
	return finish(status, err)
}

// upToDate reports whether the host already has what the mode would make.
func upToDate(m Mode, st remote.State, out string) bool {
	switch m {
	case Switch:
		return st.Current == out && st.Profile == out
	case Boot:
		return st.Profile == out
	case Test:
		return st.Current == out
	}
	return false
}

// copy sends the closure of path with nix copy over the host's shared
// connection.
func (r *run) copy(ctx context.Context, c *remote.Host, path string) error {
	argv := r.Nix.CopyArgs(c.Conn.StoreURL(c.Sudo()), path)
	_, err := r.Runner.Run(ctx, command.Cmd{Argv: argv, Env: []string{"NIX_SSHOPTS=" + c.Conn.SSHOpts()}})
	if err == nil {
		return nil
	}
	var ce *command.Error
	if errors.As(err, &ce) {
		if strings.Contains(ce.Stderr, "No space left on device") {
			return fault.Wrap(err, c.Name, fault.Disk,
				fmt.Sprintf("free space on the host (\"ssh %s sudo nix-collect-garbage\"); the partly copied paths are removed by the next garbage collection", c.Conn.Target.Destination()),
				"copy to %s ran out of disk space", c.Conn.Target)
		}
		if strings.Contains(ce.Stderr, "lacks a valid signature") || strings.Contains(ce.Stderr, "not a trusted user") {
			return fault.Wrap(err, c.Name, fault.Copy,
				fmt.Sprintf("make %s a trusted user on the host (nix.settings.trusted-users = [ \"%s\" ]) or deploy as root", c.Conn.Target.Login(), c.Conn.Target.Login()),
				"the host's Nix refused the copied paths: %s", command.Tail(ce.Stderr, 1))
		}
		return fault.Wrap(err, c.Name, fault.Copy,
			fmt.Sprintf("run the copy by hand to see more: NIX_SSHOPTS='%s' %s", c.Conn.SSHOpts(), command.Join(argv)),
			"copy to %s failed: %s", c.Conn.Target, command.Tail(ce.Stderr, 3))
	}
	return fmt.Errorf("%s: copy: %w", c.Name, err)
}
