package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/lab/nspawn"
)

// Tests of issue 8: skiff against hosts running real systemd 252
// (internal/lab/nspawn: Debian bookworm containers booted by systemd-nspawn,
// with journald, Debian's sshd and Nix 2.8). The systemd-run supervisor,
// real failed units and their journals, sshd restarting under an
// activation. Every subtest has a host of its own; the hosts boot once.

// sdHosts are the hosts of TestSystemd, one per subtest.
var sdHosts = []nspawn.HostSpec{
	{Name: "sd-confirm"}, {Name: "sd-sshd"}, {Name: "sd-lockout"}, {Name: "sd-units"},
	{Name: "sd-restart"}, {Name: "sd-kill"}, {Name: "sd-rollback"}, {Name: "sd-lock"},
	{Name: "sd-doctor"}, {Name: "sd-small", NixSize: 64 << 20}, {Name: "sd-sudo"},
}

// sdSystem is a nixosConfigurations binding of a systemd host's system.
func sdSystem(name, extra string) string {
	return fmt.Sprintf("      %s = lib.mkSystemdSystem { name = %q; %s };\n", name, name, extra)
}

// sdWeb is a long-running unit whose definition changes with gen, so that
// each new generation restarts it.
func sdWeb(gen int) string {
	return fmt.Sprintf(`"demo-web.service" = { description = "Demo web service"; execStart = "/bin/sleep infinity"; version = %d; };`, gen)
}

// sdDeploy deploys generation gen of name (demo-web plus extra units and
// mkSystemdSystem arguments) and returns the result.
func sdDeploy(t *testing.T, f *nspawn.Fleet, name string, gen int, units, extra string, flags ...string) result {
	t.Helper()
	flake := writeFlake(t, sdSystem(name, fmt.Sprintf("generation = %d; units = { %s %s }; %s", gen, sdWeb(gen), units, extra)))
	args := append([]string{"deploy", name, confirm, "--flake", flake}, flags...)
	return skiffOn(t, f, args...)
}

// on runs argv inside a systemd host (not over SSH) and returns its output.
func on(t *testing.T, f *nspawn.Fleet, host string, argv ...string) string {
	t.Helper()
	out, err := f.Host(host).Exec(context.Background(), argv...)
	if err != nil {
		t.Fatalf("%s: %v", host, err)
	}
	return strings.TrimSpace(out)
}

// try is on for commands that may fail.
func try(f *nspawn.Fleet, host string, argv ...string) string {
	out, _ := f.Host(host).Exec(context.Background(), argv...)
	return strings.TrimSpace(out)
}

// sshWorks opens a new SSH connection to host and runs true.
func sshWorks(f *nspawn.Fleet, host string) error {
	out, err := exec.Command("ssh", "-F", f.SSHConfig(), "-o", "ControlPath=none", host, "true").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// activations lists the transient units the supervisors ran in, from the
// host's journal.
func activations(t *testing.T, f *nspawn.Fleet, host string) string {
	return try(f, host, "journalctl", "--no-pager", "-o", "cat", "_PID=1", "-u", "skiff-activate-*")
}

func TestSystemd(t *testing.T) {
	if err := nspawn.Available(""); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("cannot run the systemd-nspawn hosts in CI: %v", err)
		}
		t.Skipf("skipping the systemd hosts: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	f, err := nspawn.Start(ctx, nspawn.Options{Dir: t.TempDir(), Hosts: sdHosts, Logf: t.Logf})
	if err != nil {
		t.Fatalf("start the systemd hosts: %v", err)
	}
	t.Logf("%d systemd hosts booted in %s (tree %s)", len(sdHosts), time.Since(start).Round(10*time.Millisecond), f.Tree())
	t.Cleanup(func() {
		if err := f.Stop(); err != nil {
			t.Errorf("stop the systemd hosts: %v", err)
		}
	})
	for _, h := range f.Hosts() {
		if out := try(f, h.Name, "systemctl", "list-units", "--failed", "--plain", "--no-legend"); out != "" {
			t.Fatalf("%s booted with failed units:\n%s\n%s", h.Name, out, try(f, h.Name, "journalctl", "-b", "--no-pager", "-p", "warning"))
		}
	}

	for _, tc := range []struct {
		name string
		run  func(*testing.T, *nspawn.Fleet)
	}{
		{"Confirm", sdConfirm},
		{"BrokenSSHDIsRolledBack", sdBrokenSSHD},
		{"LockoutIsRolledBack", sdLockout},
		{"NewlyFailedUnitsWithRealJournal", sdFailedUnits},
		{"SSHDRestartsMidActivation", sdRestartSSHD},
		{"KilledDeployerHostRevertsByItself", sdKilledDeployer},
		{"RollbackCommand", sdRollback},
		{"HostLock", sdHostLock},
		{"Doctor", sdDoctor},
		{"DiskPreflightOnSmallNix", sdSmallNix},
		{"DeployUserThroughSudo", sdSudo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, f)
		})
	}
}

// The whole protocol through systemd-run: the first deploy is a plain
// switch, the second runs under a transient unit, is confirmed over a new
// connection, restarts the changed unit and becomes the boot default; a
// reboot boots it.
func sdConfirm(t *testing.T, f *nspawn.Fleet) {
	const h = "sd-confirm"
	wantCode(t, sdDeploy(t, f, h, 1, "", ""), 0)
	if got := on(t, f, h, "systemctl", "is-active", "demo-web.service"); got != "active" {
		t.Fatalf("demo-web.service %s after the first deploy", got)
	}
	pid1 := on(t, f, h, "systemctl", "show", "-P", "MainPID", "demo-web.service")

	r := sdDeploy(t, f, h, 2, "", "")
	if r.code != 0 { // what the supervisor did, and systemd around it
		t.Log(try(f, h, "sh", "-c", "tail -n +1 /run/skiff/act-*/state /run/skiff/act-*/log; journalctl --no-pager -n 60"))
	}
	wantCode(t, r, 0)
	wantContains(t, "progress", r.stderr, "under a supervisor", "restarting the following units: demo-web.service", "confirmed; system profile at generation 2")
	wantContains(t, "summary", r.stdout, h, "deployed", "1 -> 2")
	wantContains(t, "journal of PID 1", activations(t, f, h), "Started skiff-activate-", "skiff activation ")
	if pid2 := on(t, f, h, "systemctl", "show", "-P", "MainPID", "demo-web.service"); pid2 == pid1 || pid2 == "0" {
		t.Errorf("demo-web.service main pid %s, was %s: want a restarted unit", pid2, pid1)
	}
	gen2 := on(t, f, h, "readlink", "/run/current-system")
	if got := on(t, f, h, "readlink", "/nix/var/nix/profiles/system"); got != "system-2-link" {
		t.Errorf("profile %s, want system-2-link", got)
	}
	if got := on(t, f, h, "readlink", "-f", "/nix/var/lab/boot-default"); got != gen2 {
		t.Errorf("boot default %s, want %s", got, gen2)
	}

	// A reboot boots the boot default and starts its units.
	_, _ = f.Host(h).Exec(context.Background(), "systemctl", "reboot")
	select {
	case <-f.Host(h).Exited():
	case <-time.After(time.Minute):
		t.Fatal("the host did not go down for the reboot")
	}
	if err := f.Host(h).Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := on(t, f, h, "readlink", "/run/current-system"); got != gen2 {
		t.Errorf("running %s after a reboot, want the boot default %s", got, gen2)
	}
	if got := try(f, h, "systemctl", "is-active", "demo-web.service"); got != "active" {
		t.Errorf("demo-web.service %s after a reboot", got)
	}
	wantCode(t, sdDeploy(t, f, h, 2, "", ""), 0)
}

// sdRolledBack checks that host runs first again, with its profile at
// generation 1 only, and that a new SSH connection gets in.
func sdRolledBack(t *testing.T, f *nspawn.Fleet, h, first string) {
	t.Helper()
	if got := on(t, f, h, "readlink", "/run/current-system"); got != first {
		t.Errorf("running %s, want the previous %s", got, first)
	}
	if got := on(t, f, h, "sh", "-c", "cd /nix/var/nix/profiles && ls -d system-*-link | tr '\\n' ' '"); got != "system-1-link" {
		t.Errorf("generations %q, want only system-1-link", got)
	}
	if got := try(f, h, "systemctl", "is-active", "ssh.service", "demo-web.service"); got != "active\nactive" {
		t.Errorf("ssh.service and demo-web.service: %q, want active", got)
	}
	if err := sshWorks(f, h); err != nil {
		t.Errorf("a new ssh connection after the rollback: %v", err)
	}
}

// A configuration whose sshd cannot start: ssh.service fails for real, the
// host goes back to the previous system, whose sshd comes back.
func sdBrokenSSHD(t *testing.T, f *nspawn.Fleet) {
	const h = "sd-sshd"
	wantCode(t, sdDeploy(t, f, h, 1, "", ""), 0)
	first := on(t, f, h, "readlink", "/run/current-system")
	r := sdDeploy(t, f, h, 2, "", `sshdConfig = "NoSuchOption yes\n";`)
	wantCode(t, r, 4)
	wantContains(t, "progress", r.stderr, "restarting the following units: demo-web.service, ssh.service", "rolled back to generation 1")
	// Debian's ssh.service retries a few times before it is "failed": the
	// deployer sees either that or, first, that nothing listens any more.
	if !strings.Contains(r.stderr, "skiff: error: sd-sshd: newly failed units ssh.service after activation") &&
		!strings.Contains(r.stderr, "skiff: error: sd-sshd: lost SSH access after activation: a new connection failed (connection to root@sd-sshd refused: nothing listens on the ssh port)") {
		t.Errorf("the error names neither the failed ssh.service nor the refused connection:\n%s", r.stderr)
	}
	wantContains(t, "ssh.service's journal", try(f, h, "journalctl", "--no-pager", "-u", "ssh.service"),
		"Bad configuration option: NoSuchOption", "Failed to start ssh.service - OpenBSD Secure Shell server.")
	sdRolledBack(t, f, h, first)
	if out := try(f, h, "ls", "/etc/ssh/sshd_config.d"); strings.Contains(out, "50-skiff-system.conf") {
		t.Errorf("the broken sshd settings are still installed: %s", out)
	}
}

// A configuration that locks root out (sshd runs, refuses root): only the
// confirmation over a new connection notices.
func sdLockout(t *testing.T, f *nspawn.Fleet) {
	const h = "sd-lockout"
	wantCode(t, sdDeploy(t, f, h, 1, "", ""), 0)
	first := on(t, f, h, "readlink", "/run/current-system")
	r := sdDeploy(t, f, h, 2, "", `sshdConfig = "PermitRootLogin no\n";`)
	wantCode(t, r, 4)
	wantContains(t, "error", r.stderr, "skiff: error: sd-lockout: lost SSH access after activation", "rolled back to generation 1",
		"the boot default is unchanged", "skiff: hint: the new configuration locks root@sd-lockout out")
	sdRolledBack(t, f, h, first)
}

// A unit that really fails: the deployer shows its real journal and the
// host goes back; the failed unit is forgotten.
func sdFailedUnits(t *testing.T, f *nspawn.Fleet) {
	const h = "sd-units"
	wantCode(t, sdDeploy(t, f, h, 1, "", ""), 0)
	first := on(t, f, h, "readlink", "/run/current-system")
	failing := `"demo-fail.service" = { description = "Demo failing service"; type = "oneshot"; execStart = "/bin/false"; };`
	r := sdDeploy(t, f, h, 2, failing, "")
	wantCode(t, r, 4)
	wantContains(t, "progress", r.stderr, "starting the following units: demo-fail.service", "warning: the following units failed: demo-fail.service",
		"demo-fail.service failed; its last 50 journal lines:",
		"sd-units systemd[1]: Starting demo-fail.service - Demo failing service...",
		"demo-fail.service: Main process exited, code=exited, status=1/FAILURE",
		"demo-fail.service: Failed with result 'exit-code'.",
		"Failed to start demo-fail.service - Demo failing service.",
		"skiff: error: sd-units: newly failed units demo-fail.service after activation; rolled back to generation 1")
	sdRolledBack(t, f, h, first)
	if out := try(f, h, "systemctl", "list-units", "--failed", "--plain", "--no-legend"); out != "" {
		t.Errorf("failed units after the rollback:\n%s", out)
	}
	// Kept on request: the new system stays, with its failed unit.
	r = sdDeploy(t, f, h, 2, failing, "", "--no-rollback-on-failure")
	wantCode(t, r, 3)
	wantContains(t, "error", r.stderr, "newly failed units demo-fail.service after activation; the new system was kept (--no-rollback-on-failure)")
	if got := try(f, h, "systemctl", "is-failed", "demo-fail.service"); got != "failed" {
		t.Errorf("demo-fail.service %q, want failed", got)
	}
}

// The protocol logged in as deploy, whose sudo asks for no password (a
// NixOS deploy user in wheel with security.sudo.wheelNeedsPassword =
// false): the session, the copy and the supervisor's transient unit go
// through sudo -n; a newly failed unit is rolled back, with its journal.
func sdSudo(t *testing.T, f *nspawn.Fleet) {
	const h = "sd-sudo"
	const as = "--target-user=deploy"
	wantCode(t, sdDeploy(t, f, h, 1, "", "", as), 0)
	r := sdDeploy(t, f, h, 2, "", "", as, "-x")
	if r.code != 0 {
		t.Log(try(f, h, "sh", "-c", "tail -n +1 /run/skiff/act-*/state /run/skiff/act-*/log; journalctl --no-pager -n 60"))
	}
	wantCode(t, r, 0)
	wantContains(t, "progress", r.stderr, "under a supervisor", "restarting the following units: demo-web.service", "confirmed; system profile at generation 2")
	wantContains(t, "trace", r.stderr, "deploy@"+h, "sudo -n")
	if strings.Contains(r.stderr, "root@"+h) {
		t.Errorf("a command logged in as root:\n%s", r.stderr)
	}
	wantContains(t, "journal of PID 1", activations(t, f, h), "Started skiff-activate-")
	if got := on(t, f, h, "readlink", "/nix/var/nix/profiles/system"); got != "system-2-link" {
		t.Errorf("profile %s, want system-2-link", got)
	}
	second := on(t, f, h, "readlink", "/run/current-system")
	if got := on(t, f, h, "readlink", "-f", "/nix/var/lab/boot-default"); got != second {
		t.Errorf("boot default %s, want %s", got, second)
	}

	failing := `"demo-fail.service" = { description = "Demo failing service"; type = "oneshot"; execStart = "/bin/false"; };`
	r = sdDeploy(t, f, h, 3, failing, "", as)
	wantCode(t, r, 4)
	wantContains(t, "progress", r.stderr, "demo-fail.service failed; its last 50 journal lines:",
		"demo-fail.service: Main process exited, code=exited, status=1/FAILURE",
		"skiff: error: sd-sudo: newly failed units demo-fail.service after activation; rolled back to generation 2")
	if got := on(t, f, h, "readlink", "/run/current-system"); got != second {
		t.Errorf("running %s, want generation 2 (%s)", got, second)
	}
	if got := on(t, f, h, "readlink", "/nix/var/nix/profiles/system"); got != "system-2-link" {
		t.Errorf("profile %s, want system-2-link", got)
	}
	if out := try(f, h, "systemctl", "list-units", "--failed", "--plain", "--no-legend"); out != "" {
		t.Errorf("failed units after the rollback:\n%s", out)
	}
}

// sshd restarts while the activation runs (a slow one): the supervisor in
// its own unit and the deployer's connection both survive it.
func sdRestartSSHD(t *testing.T, f *nspawn.Fleet) {
	const h = "sd-restart"
	wantCode(t, sdDeploy(t, f, h, 1, "", ""), 0)
	before := on(t, f, h, "systemctl", "show", "-P", "MainPID", "ssh.service")
	r := sdDeploy(t, f, h, 2, "", `sshdConfig = "LoginGraceTime 100\n"; activationDelay = 2;`)
	wantCode(t, r, 0)
	wantContains(t, "progress", r.stderr, "restarting the following units: demo-web.service, ssh.service", "confirmed; system profile at generation 2")
	if after := on(t, f, h, "systemctl", "show", "-P", "MainPID", "ssh.service"); after == before || after == "0" {
		t.Errorf("sshd main pid %s, was %s: want a restarted sshd", after, before)
	}
	if got := on(t, f, h, "readlink", "/nix/var/nix/profiles/system"); got != "system-2-link" {
		t.Errorf("profile %s, want system-2-link", got)
	}
}

// The deployer is SIGKILLed during a slow activation: the supervisor, in
// its own transient unit, returns to the previous system by itself.
func sdKilledDeployer(t *testing.T, f *nspawn.Fleet) {
	const h = "sd-kill"
	wantCode(t, sdDeploy(t, f, h, 1, "", ""), 0)
	first := on(t, f, h, "readlink", "/run/current-system")
	slow := writeFlake(t, sdSystem(h, fmt.Sprintf("generation = 2; units = { %s }; activationDelay = 3;", sdWeb(2))))
	if _, _, seen := signalAt(t, f, syscall.SIGKILL, h+"| activating the configuration", "deploy", h, confirm, "--flake", slow); !seen {
		t.Fatalf("the deploy never reached the supervised activation; the host's journal:\n%s", try(f, h, "journalctl", "-b", "--no-pager", "-n", "60"))
	}
	state := supervisorState(func() string { return try(f, h, "sh", "-c", "cat /run/skiff/act-*/state") })
	wantContains(t, "supervisor state", state, "rolled-back 0 not confirmed within 5s: the deployer vanished or lost SSH access")
	wantContains(t, "journal of PID 1", activations(t, f, h), "Started skiff-activate-")
	sdRolledBack(t, f, h, first)

	// The killed deploy's lock is stale: the next deploy takes it over.
	r := sdDeploy(t, f, h, 3, "", "")
	wantCode(t, r, 0)
	wantContains(t, "progress", r.stderr, "took over a stale deploy lock of")
}

// skiff rollback goes back a generation (and to one by number) through the
// same supervisor; systemd runs the old units again.
func sdRollback(t *testing.T, f *nspawn.Fleet) {
	const h = "sd-rollback"
	var systems []string
	for gen := 1; gen <= 3; gen++ {
		wantCode(t, sdDeploy(t, f, h, gen, "", ""), 0)
		systems = append(systems, on(t, f, h, "readlink", "/run/current-system"))
	}
	flake := writeFlake(t, sdSystem(h, fmt.Sprintf("generation = 3; units = { %s };", sdWeb(3))))
	r := skiffOn(t, f, "rollback", h, confirm, "--flake", flake)
	wantCode(t, r, 0)
	wantContains(t, "progress", r.stderr, "under a supervisor", "restarting the following units: demo-web.service",
		"switched from generation 3 ("+systems[2]+") to generation 2 ("+systems[1]+")")
	if got, prof := on(t, f, h, "readlink", "/run/current-system"), on(t, f, h, "readlink", "/nix/var/nix/profiles/system"); got != systems[1] || prof != "system-2-link" {
		t.Errorf("running %s with profile %s, want generation 2 (%s)", got, prof, systems[1])
	}
	if got := on(t, f, h, "readlink", "-f", "/nix/var/lab/boot-default"); got != systems[1] {
		t.Errorf("boot default %s, want generation 2", got)
	}
	if got := on(t, f, h, "systemctl", "cat", "demo-web.service"); !strings.Contains(got, "# version=2") {
		t.Errorf("systemd runs this demo-web.service, want generation 2's:\n%s", got)
	}
	r = skiffOn(t, f, "rollback", h, "--to", "1", confirm, "--flake", flake)
	wantCode(t, r, 0)
	if got := on(t, f, h, "readlink", "/run/current-system"); got != systems[0] {
		t.Errorf("running %s, want generation 1 (%s)", got, systems[0])
	}
}

// A second deploy is refused while the first holds the host's lock.
func sdHostLock(t *testing.T, f *nspawn.Fleet) {
	const h = "sd-lock"
	wantCode(t, sdDeploy(t, f, h, 1, "", ""), 0)
	second := writeFlake(t, sdSystem(h, fmt.Sprintf("generation = 3; units = { %s };", sdWeb(3))))
	wantCode(t, skiffOn(t, f, "deploy", h, "--mode", "dry-activate", "--flake", second), 0)
	first := make(chan result, 1)
	go func() {
		first <- skiffOn(t, f, "deploy", h, confirm, "--flake", writeFlake(t, sdSystem(h, fmt.Sprintf("generation = 2; units = { %s }; activationDelay = 5;", sdWeb(2)))))
	}()
	held := false
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && !held; time.Sleep(100 * time.Millisecond) {
		_, err := f.Host(h).Exec(context.Background(), "sh", "-c", "test -d /run/skiff/lock && ls -d /run/skiff/act-*")
		held = err == nil
	}
	if !held {
		t.Fatal("the first deploy never took the lock")
	}
	r := skiffOn(t, f, "deploy", h, confirm, "--flake", second)
	wantCode(t, r, 3)
	wantContains(t, "error", r.stderr, "skiff: error: sd-lock: another deploy holds the host's deploy lock: ", fmt.Sprintf("(pid %d, since ", os.Getpid()), "--break-lock")
	r1 := <-first
	wantCode(t, r1, 0)
	if got := on(t, f, h, "readlink", "/nix/var/nix/profiles/system"); got != "system-2-link" {
		t.Errorf("profile %s, want system-2-link (the first deploy's)", got)
	}
}

// skiff doctor's on-host checks against real systemd: a really failed unit
// is a warning naming its journal; a small /nix fails the disk check.
func sdDoctor(t *testing.T, f *nspawn.Fleet) {
	const h = "sd-doctor"
	wantCode(t, sdDeploy(t, f, h, 1, "", ""), 0)
	flake := writeFlake(t, sdSystem(h, fmt.Sprintf("units = { %s };", sdWeb(1)))+sdSystem("sd-small", ""))
	r := skiffOn(t, f, "doctor", "--json", "--flake", flake, h)
	wantCode(t, r, 0)
	var d doctorJSON
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, r.stdout)
	}
	for _, c := range []string{"tcp", "ssh-banner", "host-key", "auth", "nix", "store", "disk", "units", "activation-lock", "platform"} {
		if st, detail, _, _ := finding(t, d, h, c); st != "ok" {
			t.Errorf("%s %s: %s %s, want ok", h, c, st, detail)
		}
	}
	if _, detail, _, _ := finding(t, d, h, "nix"); !strings.Contains(detail, "2.8") {
		t.Errorf("nix check: %q, want Nix 2.8", detail)
	}

	// A oneshot unit that fails (systemd-run waits for it and fails too).
	try(f, h, "systemd-run", "--unit=sd-broken.service", "--service-type=oneshot", "--quiet", "/bin/false")
	r = skiffOn(t, f, "doctor", "--json", "--flake", flake, h, "sd-small")
	wantCode(t, r, 3)
	d = doctorJSON{}
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, r.stdout)
	}
	st, detail, hint, _ := finding(t, d, h, "units")
	if st != "warn" {
		t.Errorf("units: %s %s, want warn", st, detail)
	}
	wantContains(t, "units finding", detail+"\n"+hint, "failed: sd-broken.service", "journalctl -u sd-broken.service -n 50")
	st, detail, hint, _ = finding(t, d, "sd-small", "disk")
	if st != "fail" {
		t.Errorf("sd-small disk: %s %s, want fail", st, detail)
	}
	wantContains(t, "sd-small disk finding", detail+"\n"+hint, "/nix/store: ", "MiB free", "skiff gc sd-small --keep 5")
}

// The disk-space preflight refuses a closure that does not fit the host's
// real 64 MiB /nix before copying anything; one that fits is deployed.
func sdSmallNix(t *testing.T, f *nspawn.Fleet) {
	const h = "sd-small"
	r := sdDeploy(t, f, h, 1, "", "baseSize = 100663296;")
	wantCode(t, r, 3)
	wantContains(t, "error", r.stderr, "skiff: error: sd-small: needs 96.0 MiB in /nix/store", "MiB free", "nothing was copied")
	if out := try(f, h, "sh", "-c", "ls /nix/store | grep -c lab-system-path || true"); out != "0" {
		t.Errorf("the store has the base after a refused deploy: %s", out)
	}
	// Without the preflight (a size the preflight cannot know: nix copy
	// of a closure that fits the check but not the disk is what ENOSPC
	// is for), a small system fits.
	wantCode(t, sdDeploy(t, f, h, 1, "", "baseSize = 16777216;"), 0)
}
