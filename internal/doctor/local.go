package doctor

import (
	"context"
	"fmt"
	"sync"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/nix"
)

// localBuild reads this machine's nix configuration once for every host.
type localBuild struct {
	nix  *nix.Nix
	run  *command.Runner
	once sync.Once
	cfg  nix.BuildConfig
	err  error
}

func (l *localBuild) get(ctx context.Context) (nix.BuildConfig, error) {
	l.once.Do(func() {
		if l.nix == nil {
			l.err = fmt.Errorf("no local nix")
			return
		}
		l.cfg, l.err = l.nix.ReadBuildConfig(ctx)
	})
	return l.cfg, l.err
}

func checkLocalBuild(ctx context.Context, s *session) Finding {
	if s.t.BuiltOn != "" {
		return skip("built on %s, not here", s.t.BuiltOn)
	}
	build := s.t.BuildSystem
	if build == "" {
		build = s.t.System
	}
	if build == "" {
		return skip("the configuration names no platform")
	}
	c, err := s.local.get(ctx)
	if err != nil {
		return warn("run \"nix show-config\" to see the local configuration", "cannot read the local nix configuration: %v", err)
	}
	if yes, how := c.CanBuild(build); yes {
		return ok("this machine builds %s", how)
	}
	return Finding{Status: Fail, Class: fault.Build,
		Detail: fmt.Sprintf("this machine (%s) cannot build %s: not in extra-platforms, no builder for it", c.System, build),
		Hint:   nix.CannotBuildHint(build)}
}
