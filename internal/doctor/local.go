package doctor

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
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

// BuildConfig is what decides which platforms this machine can build.
type BuildConfig struct {
	System         string
	ExtraPlatforms []string
	Builders       []Builder
}

// Builder is a remote build machine (the builders setting).
type Builder struct {
	URI     string
	Systems []string
}

func (l *localBuild) get(ctx context.Context) (BuildConfig, error) {
	l.once.Do(func() { l.cfg, l.err = l.read(ctx) })
	return l.cfg, l.err
}

// read runs "nix show-config --json" (Nix before 2.20) or "nix config show
// --json", with the run's --nix-option settings.
func (l *localBuild) read(ctx context.Context) (BuildConfig, error) {
	if l.nix == nil {
		return BuildConfig{}, fmt.Errorf("no local nix")
	}
	sub := []string{"show-config", "--json"}
	if v, err := l.nix.Version(ctx); err == nil && v.AtLeast(2, 20) {
		sub = []string{"config", "show", "--json"}
	}
	argv := append([]string{"nix"}, nix.Features...)
	for _, o := range l.nix.Options {
		k, v, _ := strings.Cut(o, "=")
		argv = append(argv, "--option", k, v)
	}
	res, err := l.run.Run(ctx, command.Cmd{Argv: append(argv, sub...)})
	if err != nil {
		return BuildConfig{}, err
	}
	return ParseBuildConfig(res.Stdout, readFile)
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// ParseBuildConfig reads the JSON of nix show-config. Builders given as
// "@FILE" are read with read (a missing file means none).
func ParseBuildConfig(data []byte, read func(string) (string, error)) (BuildConfig, error) {
	var raw map[string]struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return BuildConfig{}, fmt.Errorf("read nix configuration: %w", err)
	}
	var c BuildConfig
	_ = json.Unmarshal(raw["system"].Value, &c.System)
	_ = json.Unmarshal(raw["extra-platforms"].Value, &c.ExtraPlatforms)
	var builders string
	_ = json.Unmarshal(raw["builders"].Value, &builders)
	c.Builders = parseBuilders(builders, read, 0)
	return c, nil
}

// parseBuilders reads the builders setting: machines separated by ";" or
// new lines, each "URI SYSTEMS ..." (SYSTEMS comma-separated), or "@FILE".
func parseBuilders(s string, read func(string) (string, error), depth int) []Builder {
	var out []Builder
	s = strings.ReplaceAll(s, ";", "\n")
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "@") {
			if depth < 2 {
				if text, err := read(line[1:]); err == nil {
					out = append(out, parseBuilders(text, read, depth+1)...)
				}
			}
			continue
		}
		f := strings.Fields(line)
		b := Builder{URI: f[0]}
		if len(f) > 1 && f[1] != "-" {
			b.Systems = strings.Split(f[1], ",")
		}
		out = append(out, b)
	}
	return out
}

// CanBuild says whether c builds system: natively, through
// extra-platforms, or on a builder (one without systems takes the local
// system only).
func (c BuildConfig) CanBuild(system string) (bool, string) {
	if system == c.System {
		return true, system + " natively"
	}
	if slices.Contains(c.ExtraPlatforms, system) {
		return true, system + " through extra-platforms (binfmt emulation or a compatible CPU)"
	}
	for _, b := range c.Builders {
		if slices.Contains(b.Systems, system) {
			return true, system + " on builder " + b.URI
		}
	}
	return false, ""
}

func checkLocalBuild(ctx context.Context, s *session) Finding {
	if s.t.System == "" {
		return skip("the configuration names no platform")
	}
	c, err := s.local.get(ctx)
	if err != nil {
		return warn("run \"nix show-config\" to see the local configuration", "cannot read the local nix configuration: %v", err)
	}
	if yes, how := c.CanBuild(s.t.System); yes {
		return ok("this machine builds %s", how)
	}
	return Finding{Status: Fail, Class: fault.Build,
		Detail: fmt.Sprintf("this machine (%s) cannot build %s: not in extra-platforms, no builder for it", c.System, s.t.System),
		Hint: fmt.Sprintf("emulate it (NixOS: boot.binfmt.emulatedSystems = [ \"%s\" ]; elsewhere qemu-user binfmt and \"extra-platforms = %s\" in nix.conf) or use a builder: --nix-option builders='ssh://BUILDER %s'",
			s.t.System, s.t.System, s.t.System)}
}
