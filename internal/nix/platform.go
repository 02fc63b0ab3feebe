package nix

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
)

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

// ReadBuildConfig runs "nix config show --json" or "nix show-config --json"
// (ConfigShowArgs), with n's --option settings, and reads the settings that
// decide which platforms this machine builds. When the form the version
// asks for fails, it tries the other (a release that renumbered or
// backported).
func (n *Nix) ReadBuildConfig(ctx context.Context) (BuildConfig, error) {
	v, verr := n.Version(ctx)
	if verr != nil {
		v = Version{}
	}
	first, second := ConfigShowArgs(v), ConfigShowArgs(Version{})
	if !v.Has(ConfigShow) {
		second = ConfigShowArgs(ConfigShow.Since)
	}
	res, err := n.Run.Run(ctx, command.Cmd{Argv: n.argv(first...)})
	if err != nil {
		var err2 error
		if res, err2 = n.Run.Run(ctx, command.Cmd{Argv: n.argv(second...)}); err2 != nil {
			return BuildConfig{}, err
		}
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

// NativeSystem is the Nix platform name of the machine skiff runs on, as
// Go knows it (for example x86_64-linux); nix's own "system" setting may
// differ, so it is only a shortcut for the common case.
func NativeSystem() string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686", "riscv64": "riscv64"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	return arch + "-" + runtime.GOOS
}

// CannotBuildHint says how to make system buildable on a machine that
// cannot build it: emulate it locally or hand the build to a machine that
// can.
func CannotBuildHint(system string) string {
	return fmt.Sprintf("emulate it on this machine (NixOS: boot.binfmt.emulatedSystems = [ \"%s\" ]; elsewhere qemu-user binfmt and \"extra-platforms = %s\" in nix.conf), "+
		"or build elsewhere: --build-host BUILDER (or deployment.buildHost; deployment.buildOnTarget where the host builds its own platform) or a remote builder with --nix-option builders='ssh://BUILDER %s'",
		system, system, system)
}
