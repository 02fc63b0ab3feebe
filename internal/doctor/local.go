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
	cfg  BuildConfig
	err  error
}

// BuildConfig is what decides which platforms this machine can build
// (package nix reads it; deploy checks it too).
type BuildConfig = nix.BuildConfig

// Builder is a remote build machine (the builders setting).
type Builder = nix.Builder

// ParseBuildConfig reads the JSON of nix show-config.
func ParseBuildConfig(data []byte, read func(string) (string, error)) (BuildConfig, error) {
	return nix.ParseBuildConfig(data, read)
}

func (l *localBuild) get(ctx context.Context) (BuildConfig, error) {
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
