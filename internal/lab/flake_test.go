package lab

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var nixFlags = []string{"--extra-experimental-features", "nix-command flakes", "--option", "substituters", ""}

// exampleFleet copies examples/fleet to a temporary directory (a path: flake, so that
// untracked files count) and writes its generation and overrides.nix.
func exampleFleet(t *testing.T, generation, overrides string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fleet")
	src := filepath.Join("..", "..", "examples", "fleet")
	err := copyTree(src, dir, func(rel string) bool {
		return rel == "generation" || rel == "overrides.nix" || rel == "result" || strings.HasPrefix(rel, "result-")
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "generation"), []byte(generation+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "overrides.nix"), []byte(overrides), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// buildToplevel builds nixosConfigurations.NAME's toplevel and returns its store path.
func buildToplevel(t *testing.T, flake, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := append([]string{"build"}, nixFlags...)
	args = append(args, "--no-link", "--json", "path:"+flake+"#nixosConfigurations."+name+".config.system.build.toplevel")
	cmd := exec.CommandContext(ctx, "nix", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix build %s: %v\n%s", name, err, stderr.String())
	}
	var res []struct {
		Outputs map[string]string `json:"outputs"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res) != 1 || res[0].Outputs["out"] == "" {
		t.Fatalf("nix build --json: %v: %s", err, out)
	}
	return res[0].Outputs["out"]
}

func nixCopy(t *testing.T, l *Lab, target, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"copy"}, nixFlags...)
	args = append(args, "--to", "ssh://"+target, path)
	cmd := exec.CommandContext(ctx, "nix", args...)
	cmd.Env = append(os.Environ(), "NIX_SSHOPTS=-F "+l.SSHConfig())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nix copy to %s: %v\n%s", target, err, out)
	}
}

// TestExampleFleet pins the contract between the lab and examples/fleet: build a
// toplevel, copy it into a host over SSH, activate it as root and as deploy with sudo,
// read the failed unit and its journal through the shims, and boot the boot default.
func TestExampleFleet(t *testing.T) {
	requireLab(t)
	l := startLab(t, []HostSpec{{Name: "web1"}, {Name: "web2"}})
	web1, web2 := l.Host("web1"), l.Host("web2")
	ctx := context.Background()

	overrides := `{
  web1 = args: {
    units = args.units // { "demo-web.service" = args.units."demo-web.service" // { fails = true; }; };
    authorizedKeys = { root = [ "` + l.PublicKey() + ` declared" ]; };
  };
}
`
	flake := exampleFleet(t, "7", overrides)
	sys1 := buildToplevel(t, flake, "web1")
	sys2 := buildToplevel(t, flake, "web2")

	out, err := exec.Command("nix", append(append([]string{"path-info"}, nixFlags...), "-r", sys1)...).Output()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Fields(string(out))); n < 4 {
		t.Fatalf("closure of %s has %d paths, want at least 4:\n%s", sys1, n, out)
	}
	for _, f := range []string{"bin/switch-to-configuration", "activate", "dry-activate", "nixos-version", "init-interface-version", "etc/lab/units/demo-web.service", "sw/bin/nixos-version", "kernel", "initrd", "specialisation"} {
		if _, err := os.Stat(filepath.Join(sys1, f)); err != nil {
			t.Errorf("toplevel lacks %s: %v", f, err)
		}
	}

	// web1 as root: the new system is active, demo-web failed: exit 4.
	nixCopy(t, l, "root@web1", sys1)
	out2, err := sshRun(t, l, "root@web1", "nix-env -p /nix/var/nix/profiles/system --set "+sys1+" && "+sys1+"/bin/switch-to-configuration switch")
	if exitCode(err) != 4 {
		t.Fatalf("switch on web1: exit %d, want 4:\n%s", exitCode(err), out2)
	}
	for _, want := range []string{"activating the configuration...", "setting up /etc...", "warning: the following units failed: demo-web.service", "× demo-web.service - Demo web service"} {
		if !strings.Contains(out2, want) {
			t.Errorf("switch output lacks %q:\n%s", want, out2)
		}
	}
	if got := strings.TrimSpace(mustExec(t, web1, "readlink", "/run/current-system")); got != sys1 {
		t.Errorf("web1 /run/current-system = %q, want %s", got, sys1)
	}
	if out, err := web1.Exec(ctx, "systemctl", "is-system-running"); exitCode(err) != 1 || out != "degraded\n" {
		t.Errorf("web1 is-system-running: %q %v", out, err)
	}
	if out := mustExec(t, web1, "systemctl", "list-units", "--failed", "--plain", "--no-legend"); out != "demo-web.service loaded failed failed Demo web service\n" {
		t.Errorf("web1 failed units: %q", out)
	}
	journal := mustExec(t, web1, "journalctl", "-u", "demo-web.service", "-n", "3", "--no-pager")
	lines := strings.Split(strings.TrimSpace(journal), "\n")
	if len(lines) != 3 ||
		!strings.HasSuffix(lines[0], " web1 systemd[1]: demo-web.service: Main process exited, code=exited, status=1/FAILURE") ||
		!strings.HasSuffix(lines[1], " web1 systemd[1]: demo-web.service: Failed with result 'exit-code'.") ||
		!strings.HasSuffix(lines[2], " web1 systemd[1]: Failed to start demo-web.service - Demo web service.") {
		t.Errorf("web1 journal of demo-web:\n%s", journal)
	}
	if keys := mustExec(t, web1, "cat", "/etc/ssh/authorized_keys.d/root"); keys != l.PublicKey()+" declared\n" {
		t.Errorf("web1 root keys after activation: %q", keys)
	}
	if keys := mustExec(t, web1, "cat", "/etc/ssh/authorized_keys.d/deploy"); !strings.HasSuffix(keys, " skiff-lab\n") {
		t.Errorf("web1 deploy keys changed although the system declares none: %q", keys)
	}
	// web2 did not change.
	if out, err := web2.Exec(ctx, "readlink", "/run/current-system"); err == nil {
		t.Errorf("web2 has a current system: %q", out)
	}

	// web2 as deploy through sudo -n: a healthy switch.
	nixCopy(t, l, "root@web2", sys2)
	out2, err = sshRun(t, l, "deploy@web2", "sudo -n nix-env -p /nix/var/nix/profiles/system --set "+sys2+" && sudo -n "+sys2+"/bin/switch-to-configuration switch")
	if err != nil || !strings.Contains(out2, "the following new units were started: demo-web.service") {
		t.Fatalf("switch on web2 as deploy: %v:\n%s", err, out2)
	}
	if got := strings.TrimSpace(mustExec(t, web2, "readlink", "/run/current-system")); got != sys2 {
		t.Errorf("web2 /run/current-system = %q, want %s", got, sys2)
	}
	if out := mustExec(t, web2, "systemctl", "is-system-running"); out != "running\n" {
		t.Errorf("web2 is-system-running: %q", out)
	}
	if web2.Logins(DeployUser) != 1 {
		t.Errorf("web2 deploy logins = %d", web2.Logins(DeployUser))
	}

	// A reboot boots the boot default and starts its units before sshd.
	if err := web2.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := web2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for _, link := range []string{"/run/current-system", "/run/booted-system"} {
		if got := strings.TrimSpace(mustExec(t, web2, "readlink", link)); got != sys2 {
			t.Errorf("web2 %s after reboot = %q, want %s", link, got, sys2)
		}
	}
	if out := mustExec(t, web2, "systemctl", "is-active", "demo-web"); out != "active\n" {
		t.Errorf("demo-web after reboot: %q", out)
	}
}
