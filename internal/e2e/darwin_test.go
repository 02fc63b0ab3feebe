package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiffdeploy/skiff/internal/lab"
)

// writeMixedFlake is writeFlake with darwinConfigurations (bindings using
// lib.mkDarwinSystem) next to the nixosConfigurations.
func writeMixedFlake(t *testing.T, nixos, darwin string) string {
	t.Helper()
	dir := writeFlake(t, nixos)
	flake := "{\n  outputs = { self }: let lib = import ./lib.nix; in {\n    nixosConfigurations = {\n" + nixos +
		"\n    };\n    darwinConfigurations = {\n" + darwin + "\n    };\n  };\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mac(name, extra string) string {
	return fmt.Sprintf("      %s = lib.mkDarwinSystem { name = %q; %s };\n", name, name, extra)
}

func execIn(t *testing.T, l *lab.Lab, host string, argv ...string) string {
	t.Helper()
	out, _ := l.Host(host).Exec(context.Background(), argv...)
	return strings.TrimSpace(out)
}

// A nix-darwin host deploys in the same run as a NixOS host: copied,
// profile set, activate-user and activate run (no switch-to-configuration,
// no systemd); a failing activation is rolled back to the previous
// generation; skiff rollback works on it too.
func TestDarwinHostDeploysWithNixOSHosts(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "nx1"}, lab.HostSpec{Name: "mac1", Darwin: true})
	if got := execIn(t, l, "mac1", "uname", "-s"); got != "Darwin" {
		t.Fatalf("mac1 uname -s = %q, want Darwin", got)
	}
	gen := func(n int, extra string) string {
		return writeMixedFlake(t, host("nx1", fmt.Sprintf("generation = %d;", n)),
			mac("mac1", fmt.Sprintf("generation = %d; %s", n, extra)))
	}

	// First deploy: mac1 never had nix-darwin.
	r := skiffOn(t, l, "deploy", "--flake", gen(1, ""))
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "nx1", "mac1", "- -> 1")
	wantContains(t, "progress", r.stderr,
		"mac1: activate: no previous nix-darwin system: activating the built system directly",
		"mac1: activate: nix-darwin activation: activate-user as root, then activate as root",
		"mac1| setting up user launchd services...", "mac1| activating system...")
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l[min(len(l), 9):]), "mac1") && strings.Contains(l, "switch-to-configuration") {
			t.Errorf("a nix-darwin host ran switch-to-configuration: %s", l)
		}
	}
	gen1 := execIn(t, l, "mac1", "readlink", "/run/current-system")
	if !strings.Contains(gen1, "darwin-system-mac1") || execIn(t, l, "mac1", "readlink", "-f", "/nix/var/nix/profiles/system") != gen1 {
		t.Fatalf("mac1 runs %q; profile %q", gen1, execIn(t, l, "mac1", "readlink", "-f", "/nix/var/nix/profiles/system"))
	}
	if got := execIn(t, l, "mac1", "cat", "/run/lab-darwin/activated"); got != gen1 {
		t.Errorf("activate recorded %q, want %q", got, gen1)
	}
	if got := execIn(t, l, "mac1", "cat", "/run/lab-darwin/activate-user.root"); got != "root "+gen1 {
		t.Errorf("activate-user recorded %q", got)
	}
	if p := profileOf(t, l, "nx1"); p != "system-1-link" {
		t.Errorf("nx1 profile %q", p)
	}

	// A failing activation returns to generation 1.
	r = skiffOn(t, l, "deploy", "mac1", "--flake", gen(2, "activationFails = true;"))
	wantCode(t, r, 4)
	wantContains(t, "errors", r.stderr, "mac1: nix-darwin activate exited with 1; rolled back to generation 1")
	if got := execIn(t, l, "mac1", "readlink", "/run/current-system"); got != gen1 {
		t.Errorf("after the rollback mac1 runs %q, want %q", got, gen1)
	}
	if p := profileOf(t, l, "mac1"); p != "system-1-link" {
		t.Errorf("after the rollback the profile is %q", p)
	}
	if out := execIn(t, l, "mac1", "ls", "/nix/var/nix/profiles"); strings.Contains(out, "system-2-link") {
		t.Errorf("the failed generation was kept: %s", out)
	}

	// A failing health check rolls back too (no unit checks: no systemd).
	r = skiffOn(t, l, "deploy", "mac1", "--flake", gen(2, `deployment.healthChecks = { commands = [ "test -e /nonexistent" ]; timeout = 1; };`))
	wantCode(t, r, 4)
	wantContains(t, "errors", r.stderr, `check "test -e /nonexistent" failed`, "rolled back to generation 1")

	// Generation 2, then skiff rollback to generation 1.
	r = skiffOn(t, l, "deploy", "mac1", "--flake", gen(2, ""))
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "1 -> 2")
	gen2 := execIn(t, l, "mac1", "readlink", "/run/current-system")
	if gen2 == gen1 {
		t.Fatal("generation 2 is not running")
	}
	r = skiffOn(t, l, "rollback", "mac1", "--flake", gen(2, ""))
	wantCode(t, r, 0)
	if got := execIn(t, l, "mac1", "readlink", "/run/current-system"); got != gen1 {
		t.Errorf("after skiff rollback mac1 runs %q, want %q", got, gen1)
	}
	if got := execIn(t, l, "mac1", "cat", "/run/lab-darwin/activated"); got != gen1 {
		t.Errorf("skiff rollback did not run generation 1's activate: %q", got)
	}
	for _, h := range []string{"nx1", "mac1"} {
		if roots := rootsOn(t, l, h); len(roots) != 0 {
			t.Errorf("%s: GC roots left after the deploys: %v", h, roots)
		}
	}
	r = skiffOn(t, l, "generations", "mac1", "--flake", gen(2, ""))
	wantCode(t, r, 0)
	wantContains(t, "generations", r.stdout, "1", "2")

	// NixOS-only modes are refused for nix-darwin hosts before touching them.
	r = skiffOn(t, l, "deploy", "mac1", "--mode", "boot", "--flake", gen(3, ""))
	if r.code == 0 {
		t.Fatal("--mode boot deployed a nix-darwin host")
	}
	wantContains(t, "errors", r.stderr, "--mode boot is a NixOS mode")
	if p := profileOf(t, l, "mac1"); p != "system-1-link" {
		t.Errorf("--mode boot changed the profile: %q", p)
	}
}

// A real nix-darwin toplevel is a darwin derivation: this Linux machine
// cannot build it, and says so before building, naming the host.
func TestDarwinSystemNeedsADarwinBuilder(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "mac2", Darwin: true})
	dir := writeMixedFlake(t, "", mac("mac2", `system = "aarch64-darwin"; buildSystem = "aarch64-darwin";`))
	r := skiffOn(t, l, "deploy", "--flake", dir)
	if r.code == 0 {
		t.Fatal("a darwin derivation deployed from Linux")
	}
	wantContains(t, "errors", r.stderr, "mac2", "cannot build the system for platform aarch64-darwin",
		"builders='ssh://BUILDER aarch64-darwin'", "--build-host")
	if p := profileOf(t, l, "mac2"); p != "" {
		t.Errorf("mac2 profile %q", p)
	}
}
