package nspawn

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func need(t *testing.T) {
	t.Helper()
	if err := Available(""); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("cannot run systemd-nspawn hosts in CI: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
}

func TestRecipeHashIsStable(t *testing.T) {
	if a, b := recipeHash(Bookworm), recipeHash(Release{}); a != b || len(a) != 16 {
		t.Fatalf("recipe hash %q, %q", a, b)
	}
}

func TestHostsBootRealSystemdAndReboot(t *testing.T) {
	need(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := Tree(ctx, Bookworm, "", "", t.Logf); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	f, err := Start(ctx, Options{Dir: t.TempDir(), Hosts: []HostSpec{{Name: "n1"}, {Name: "n2", NixSize: 32 << 20}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("2 hosts booted in %s", time.Since(start).Round(10*time.Millisecond))
	defer func() {
		if err := f.Stop(); err != nil {
			t.Error(err)
		}
	}()
	ssh := func(host string, cmd string) (string, error) {
		out, err := exec.Command("ssh", "-F", f.SSHConfig(), host, cmd).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	out, err := ssh("n1", "cat /proc/1/comm; systemctl --version | head -n1; nix-store --version; hostname; test -d /run/systemd/system && echo systemd")
	if err != nil {
		t.Fatalf("ssh n1: %v: %s", err, out)
	}
	for _, want := range []string{"systemd\nsystemd 252", "nix-store (Nix) 2.8", "n1", "\nsystemd"} {
		if !strings.Contains(out, want) {
			t.Errorf("n1 lacks %q:\n%s", want, out)
		}
	}
	// Each host has a key of its own.
	k1, _ := f.Host("n1").Exec(ctx, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
	k2, _ := f.Host("n2").Exec(ctx, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
	if k1 == "" || k1 == k2 {
		t.Errorf("host keys %q and %q: want two different keys", k1, k2)
	}
	if out, err := f.Host("n2").Exec(ctx, "df", "-P", "-B1", "/nix/store"); err != nil || !strings.Contains(out, "33554432") {
		t.Errorf("n2's /nix/store: %v\n%s", err, out)
	}
	// A reboot ends nspawn; Start boots the host again with its key.
	_, _ = ssh("n1", "systemctl reboot")
	select {
	case <-f.Host("n1").Exited():
	case <-time.After(60 * time.Second):
		t.Fatal("n1's nspawn did not end after a reboot")
	}
	start = time.Now()
	if err := f.Host("n1").Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("n1 rebooted in %s", time.Since(start).Round(10*time.Millisecond))
	if k, _ := f.Host("n1").Exec(ctx, "cat", "/etc/ssh/ssh_host_ed25519_key.pub"); k != k1 {
		t.Errorf("n1's host key changed across a reboot")
	}
}

// The bookworm tree's name is pinned, so that a change of its recipe (and
// so a new tree built) is made on purpose: the last was sudo and the user
// deploy. Every release has a tree of its own.
func TestRecipeHashPerRelease(t *testing.T) {
	if got := recipeHash(Bookworm); got != "e2409b682b83e5ca" {
		t.Errorf("bookworm recipe hash %s, want e2409b682b83e5ca (the tree with sudo and deploy)", got)
	}
	if recipeHash(Trixie) == recipeHash(Bookworm) {
		t.Errorf("trixie and bookworm share the tree %s", recipeHash(Trixie))
	}
}

// A deployer runs the release's own nix in a chroot, with a /nix of its own
// and the bound paths at the same place.
func TestDeployerRunsTheReleasesNix(t *testing.T) {
	if err := Trixie.Available(""); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("cannot run a trixie deployer in CI: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // a first tree build
	defer cancel()
	shared := t.TempDir()
	d, err := NewDeployer(ctx, DeployerOptions{Release: Trixie, Dir: t.TempDir(), Binds: []string{shared}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code, err := d.Run(ctx, nil, nil, "sh", "-c", `nix-store --version && echo here >/nix/probe && echo seen >"$1/out"`, "sh", shared)
	if err != nil || code != 0 {
		t.Fatalf("exit %d, %v: %s", code, err, stderr)
	}
	if got := string(stdout); !strings.HasPrefix(got, "nix-store (Nix) 2.26.") {
		t.Errorf("nix-store --version in the deployer: %q, want Nix 2.26", got)
	}
	if b, err := os.ReadFile(filepath.Join(d.Nix(), "probe")); err != nil || string(b) != "here\n" {
		t.Errorf("the deployer's /nix/probe: %q, %v", b, err)
	}
	if _, err := os.Stat("/nix/probe"); err == nil {
		t.Error("the deployer wrote into the machine's /nix")
	}
	if b, err := os.ReadFile(filepath.Join(shared, "out")); err != nil || string(b) != "seen\n" {
		t.Errorf("a bound directory: %q, %v", b, err)
	}
	if _, _, code, _ := d.Run(ctx, nil, nil, "false"); code != 1 {
		t.Errorf("false in the deployer: exit %d, want 1", code)
	}
}
