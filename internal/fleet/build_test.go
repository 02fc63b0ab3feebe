package fleet

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/transport"
)

func TestBuildPlatform(t *testing.T) {
	for _, c := range []struct {
		h    flake.Host
		want string
	}{
		{flake.Host{System: "aarch64-linux", BuildSystem: "aarch64-linux"}, "aarch64-linux"},
		// The lab's darwin systems: built on Linux, the host runs darwin.
		{flake.Host{System: "x86_64-darwin", BuildSystem: "x86_64-linux"}, "x86_64-linux"},
		{flake.Host{System: "x86_64-linux"}, "x86_64-linux"},
		{flake.Host{}, ""},
	} {
		if got := buildPlatform(c.h); got != c.want {
			t.Errorf("buildPlatform(%+v) = %q, want %q", c.h, got, c.want)
		}
	}
}

func TestBuilderTarget(t *testing.T) {
	if got := builderTarget("bld1"); got != (transport.Target{Host: "bld1"}) {
		t.Errorf("bld1: %+v", got)
	}
	if got := builderTarget("nix@bld1.example.com"); got != (transport.Target{Host: "bld1.example.com", User: "nix"}) {
		t.Errorf("nix@bld1.example.com: %+v", got)
	}
	for s, want := range map[string]bool{"bld1": true, "root@bld1": true, "10.0.0.1": true, "-oProxyCommand=x": false, "a b": false, "@x": false, "x@-y": false} {
		if got := flake.ValidBuildHost(s); got != want {
			t.Errorf("ValidBuildHost(%q) = %v", s, got)
		}
	}
}

func TestDarwinModes(t *testing.T) {
	h := flake.Host{Name: "mac1", Kind: flake.KindDarwin}
	if err := darwinMode(h, Switch); err != nil {
		t.Errorf("switch refused: %v", err)
	}
	for _, m := range []Mode{Boot, Test, DryActivate} {
		if fault.ClassOf(darwinMode(h, m)) != fault.Usage {
			t.Errorf("%s accepted for a nix-darwin host", m)
		}
	}
}

func TestBuildHostOf(t *testing.T) {
	h := flake.Host{Deployment: flake.Settings{BuildHost: "bld1"}}
	if got := (&run{}).buildHostOf(h); got != "bld1" {
		t.Errorf("setting: %q", got)
	}
	if got := (&run{Options: Options{BuildHost: "bld2"}}).buildHostOf(h); got != "bld2" {
		t.Errorf("flag: %q", got)
	}
	// --build-host localhost means this machine, as nixos-rebuild takes
	// it, over deployment.buildHost too.
	if got := (&run{Options: Options{BuildHost: "localhost"}}).buildHostOf(h); got != "" {
		t.Errorf("--build-host localhost: %q, want this machine", got)
	}
}

// The build host's direct copy, under dash with a fake nix-copy-closure:
// the options reach it as NIX_SSHOPTS, "-s" as a flag, no flag as no
// argument at all, then the paths.
func TestCopyDirectScriptUnderDash(t *testing.T) {
	if _, err := exec.LookPath("dash"); err != nil {
		t.Skip("no dash")
	}
	bin := t.TempDir()
	fake := "#!/bin/sh\nprintf 'opts=%s\\n' \"$NIX_SSHOPTS\"\nfor a; do printf '[%s]\\n' \"$a\"; done\n"
	if err := os.WriteFile(filepath.Join(bin, "nix-copy-closure"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ subst, want string }{
		{"", "opts=-o BatchMode=yes -p 2222\n[--to]\n[root@web1]\n[/nix/store/aaaa-x]\n[/nix/store/bbbb y]\n"},
		{"-s", "opts=-o BatchMode=yes -p 2222\n[--to]\n[root@web1]\n[-s]\n[/nix/store/aaaa-x]\n[/nix/store/bbbb y]\n"},
	} {
		cmd := exec.Command("dash", "-c", directScript, "sh", "-o BatchMode=yes -p 2222", "root@web1", tc.subst, "/nix/store/aaaa-x", "/nix/store/bbbb y")
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		out, err := cmd.Output()
		if err != nil || string(out) != tc.want {
			t.Errorf("subst %q: %q, %v; want %q", tc.subst, out, err, tc.want)
		}
	}
}
