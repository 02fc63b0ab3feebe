package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/lab"
)

// Tests of issue 4: safe activation (supervisor, fresh-connection
// confirmation, health), the host lock and skiff rollback. Each test has a
// lab of its own: they lock hosts out, kill deployers and leave locks.

// confirm is short to keep the tests fast, and long enough for a new ssh
// connection on a loaded machine.
const confirm = "--confirm-timeout=5s"

func labHost(t *testing.T, l *lab.Lab, name string, argv ...string) string {
	t.Helper()
	out, err := l.Host(name).Exec(context.Background(), argv...)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return strings.TrimSpace(out)
}

func running(t *testing.T, l *lab.Lab, name string) string {
	return labHost(t, l, name, "readlink", "/run/current-system")
}

func profile(t *testing.T, l *lab.Lab, name string) string {
	return labHost(t, l, name, "readlink", "/nix/var/nix/profiles/system")
}

func generationsOn(t *testing.T, l *lab.Lab, name string) string {
	return labHost(t, l, name, "sh", "-c", "cd /nix/var/nix/profiles && ls -d system-*-link | sort -t- -k2 -n | tr '\\n' ' '")
}

// deployOK deploys gen of name with extra mkSystem arguments and wants exit 0.
func deployOK(t *testing.T, l *lab.Lab, name string, gen int, extra string) result {
	t.Helper()
	r := skiffOn(t, l, "deploy", name, confirm, "--flake", writeFlake(t, host(name, fmt.Sprintf("generation = %d; %s", gen, extra))))
	wantCode(t, r, 0)
	return r
}

// rootKey declares the lab's client key for root, as a NixOS
// configuration would (so that re-activating it restores the key).
func rootKey(l *lab.Lab) string {
	return fmt.Sprintf("authorizedKeys = { root = [ %q ]; };", l.PublicKey())
}

func TestLockoutIsRolledBackAfterTheConfirmWindow(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "lock1"})
	deployOK(t, l, "lock1", 1, rootKey(l))
	good := running(t, l, "lock1")

	// Generation 2 empties root's authorized keys: after activating it,
	// no new connection gets in (the shared one still would).
	r := skiffOn(t, l, "deploy", "lock1", confirm, "--flake", writeFlake(t, host("lock1", "generation = 2; authorizedKeys = { root = [ ]; };")))
	wantCode(t, r, 4)
	wantContains(t, "error", r.stderr, "skiff: error: lock1: lost SSH access after activation", "authentication as root refused",
		"rolled back to generation 1", "the boot default is unchanged", "skiff: hint: the new configuration locks root@lock1 out")
	wantContains(t, "summary", r.stdout, "lock1", "rolled back")

	if got := running(t, l, "lock1"); got != good {
		t.Errorf("running %q after the rollback, want the previous %q", got, good)
	}
	if got := generationsOn(t, l, "lock1"); got != "system-1-link" {
		t.Errorf("generations %q: want only generation 1 (no new generation)", got)
	}
	// Reachable again over a new connection.
	r = skiffOn(t, l, "deploy", "lock1", confirm, "--flake", writeFlake(t, host("lock1", "generation = 1; "+rootKey(l))))
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "up to date")

	// Plain switch semantics on request: the same deploy locks root out.
	r = skiffOn(t, l, "deploy", "lock1", "--magic-rollback=false", "--flake", writeFlake(t, host("lock1", "generation = 2; authorizedKeys = { root = [ ]; };")))
	wantCode(t, r, 0)
	r = skiffOn(t, l, "deploy", "lock1", "--flake", writeFlake(t, host("lock1", "generation = 1; "+rootKey(l))))
	wantCode(t, r, 3)
	wantContains(t, "error", r.stderr, "authentication as root refused")
}

const failingUnit = `units = { "sshd.service" = { description = "OpenSSH Daemon"; stopIfChanged = false; }; "demo-web.service" = { description = "Demo web service"; fails = true; }; };`

func TestNewlyFailedUnitsRollBackAlreadyFailedOnesDoNot(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "units2"})
	deployOK(t, l, "units2", 1, "")
	good := running(t, l, "units2")

	r := skiffOn(t, l, "deploy", "units2", confirm, "--flake", writeFlake(t, host("units2", "generation = 2; "+failingUnit)))
	wantCode(t, r, 4)
	wantContains(t, "error", r.stderr, "skiff: error: units2: newly failed units demo-web.service after activation; rolled back to generation 1")
	wantContains(t, "journal excerpt", r.stderr, "demo-web.service failed; its last 50 journal lines:",
		"demo-web.service: Main process exited, code=exited, status=1/FAILURE", "demo-web.service: Failed with result 'exit-code'.")
	if got := running(t, l, "units2"); got != good {
		t.Errorf("running %q, want the previous %q", got, good)
	}
	if got := profile(t, l, "units2"); got != "system-1-link" {
		t.Errorf("profile %q, want system-1-link", got)
	}

	// Kept on request: the unit is failing before the next deploy.
	r = skiffOn(t, l, "deploy", "units2", confirm, "--no-rollback-on-failure", "--flake", writeFlake(t, host("units2", "generation = 2; "+failingUnit)))
	wantCode(t, r, 3)
	wantContains(t, "error", r.stderr, "newly failed units demo-web.service after activation; the new system was kept (--no-rollback-on-failure)")
	if got := profile(t, l, "units2"); got != "system-2-link" {
		t.Errorf("profile %q, want system-2-link", got)
	}

	// Already failing before: deployed, not rolled back.
	r = deployOK(t, l, "units2", 3, failingUnit)
	wantContains(t, "summary", r.stdout, "deployed", "2 -> 3")
	if strings.Contains(r.stderr, "rolled back") {
		t.Errorf("rolled back for a unit that failed before:\n%s", r.stderr)
	}
	if got := profile(t, l, "units2"); got != "system-3-link" {
		t.Errorf("profile %q, want system-3-link", got)
	}
}

func TestKilledDeployerHostRevertsByItself(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "kill1"})
	deployOK(t, l, "kill1", 1, "")
	good := running(t, l, "kill1")
	slow := writeFlake(t, host("kill1", "generation = 2; activationDelay = 2;"))
	// The supervisor's output: switch-to-configuration test runs.
	if _, _, seen := signalAt(t, l, syscall.SIGKILL, "kill1| activating the configuration", "deploy", "kill1", confirm, "--flake", slow); !seen {
		t.Fatal("the deploy never reached the supervised activation")
	}

	// The supervisor activates generation 2, hears nothing and goes back.
	state := supervisorState(func() string {
		out, _ := l.Host("kill1").Exec(context.Background(), "sh", "-c", "cat /run/skiff/act-*/state")
		return out
	})
	wantContains(t, "supervisor state", state, "rolled-back 0 not confirmed within 5s: the deployer vanished or lost SSH access")
	if got := running(t, l, "kill1"); got != good {
		t.Errorf("running %q, want the previous %q", got, good)
	}
	if got := generationsOn(t, l, "kill1"); got != "system-1-link" {
		t.Errorf("generations %q, want only system-1-link", got)
	}

	// The killed deploy's lock is stale now: the next deploy takes it over.
	r := skiffOn(t, l, "deploy", "kill1", confirm, "--flake", writeFlake(t, host("kill1", "generation = 3;")))
	wantCode(t, r, 0)
	wantContains(t, "progress", r.stderr, "took over a stale deploy lock of")
}

func TestSecondDeployIsRefusedWhileTheFirstHoldsTheLock(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "lock2"})
	deployOK(t, l, "lock2", 1, "")
	// The second deploy's system is built and copied beforehand (dry-activate
	// changes nothing and takes no lock), so that it reaches the lock fast.
	second := writeFlake(t, host("lock2", "generation = 3;"))
	wantCode(t, skiffOn(t, l, "deploy", "lock2", "--mode", "dry-activate", "--flake", second), 0)

	first := make(chan result, 1)
	go func() {
		first <- skiffOn(t, l, "deploy", "lock2", confirm, "--flake", writeFlake(t, host("lock2", "generation = 2; activationDelay = 8;")))
	}()
	held := false
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && !held; time.Sleep(100 * time.Millisecond) {
		_, err := l.Host("lock2").Exec(context.Background(), "sh", "-c", "test -d /run/skiff/lock && ls -d /run/skiff/act-*")
		held = err == nil
	}
	if !held {
		t.Fatal("the first deploy never took the lock")
	}
	r := skiffOn(t, l, "deploy", "lock2", confirm, "--flake", second)
	wantCode(t, r, 3)
	machine, _ := os.Hostname()
	wantContains(t, "error", r.stderr, "skiff: error: lock2: another deploy holds the host's deploy lock: ", "@", fmt.Sprintf("(pid %d, since ", os.Getpid()),
		"skiff: hint: wait for that deploy to finish", "--break-lock")
	if machine != "" {
		wantContains(t, "error", r.stderr, "@"+machine)
	}
	wantContains(t, "summary", r.stdout, "locked")
	// upload-keys takes the same lock: no key lands in the middle of a deploy.
	r = skiffOn(t, l, "upload-keys", "lock2", "--flake", writeFlake(t, host("lock2", `generation = 3; deployment.keys.k = { text = "secret"; };`)))
	wantCode(t, r, 3)
	wantContains(t, "error", r.stderr, "skiff: error: lock2: another deploy holds the host's deploy lock: ", "--break-lock")
	if out, err := l.Host("lock2").Exec(context.Background(), "test", "-e", "/run/keys/k"); err == nil {
		t.Errorf("upload-keys wrote a key while a deploy held the lock: %s", out)
	}
	// So does rollback, whose read of the generations travels with the
	// lock request: refused, it changes nothing.
	r = skiffOn(t, l, "rollback", "lock2", confirm, "--flake", second)
	wantCode(t, r, 3)
	wantContains(t, "error", r.stderr, "skiff: error: lock2: another deploy holds the host's deploy lock: ", "--break-lock")

	r1 := <-first
	wantCode(t, r1, 0)
	if got := profile(t, l, "lock2"); got != "system-2-link" {
		t.Errorf("profile %q, want system-2-link (the first deploy's)", got)
	}
	if got := generationsOn(t, l, "lock2"); got != "system-1-link system-2-link" {
		t.Errorf("generations %q", got)
	}
}

func TestRollbackCommand(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "rb1"})
	var systems []string
	for gen := 1; gen <= 3; gen++ {
		deployOK(t, l, "rb1", gen, "")
		systems = append(systems, running(t, l, "rb1"))
	}
	flake := writeFlake(t, host("rb1", "generation = 3;"))

	r := skiffOn(t, l, "rollback", "rb1", confirm, "--flake", flake)
	wantCode(t, r, 0)
	wantContains(t, "progress", r.stderr, "switched from generation 3 ("+systems[2]+") to generation 2 ("+systems[1]+")", "under a supervisor")
	wantContains(t, "summary", r.stdout, "rb1", "deployed", "3 -> 2")
	wantContains(t, "done line", r.stderr, "rb1: done: switched to generation 2 in ")
	if got, prof := running(t, l, "rb1"), profile(t, l, "rb1"); got != systems[1] || prof != "system-2-link" {
		t.Errorf("running %q with profile %q, want generation 2 (%s)", got, prof, systems[1])
	}
	if got := labHost(t, l, "rb1", "readlink", "-f", "/nix/var/lab/boot-default"); got != systems[1] {
		t.Errorf("boot default %q, want generation 2", got)
	}

	r = skiffOn(t, l, "rollback", "rb1", "--to", "1", confirm, "--flake", flake)
	wantCode(t, r, 0)
	wantContains(t, "progress", r.stderr, "to generation 1 ("+systems[0]+")")
	if got, prof := running(t, l, "rb1"), profile(t, l, "rb1"); got != systems[0] || prof != "system-1-link" {
		t.Errorf("running %q with profile %q, want generation 1", got, prof)
	}
	if got := generationsOn(t, l, "rb1"); got != "system-1-link system-2-link system-3-link" {
		t.Errorf("generations %q: a rollback adds none and deletes none", got)
	}

	r = skiffOn(t, l, "rollback", "rb1", "--to", "9", confirm, "--flake", flake)
	wantCode(t, r, 3)
	wantContains(t, "error", r.stderr, "nothing to roll back to: the system profile has no generation 9", "1, 2, 3")

	// Rollbacks are recorded in the history like deploys.
	r = skiffOn(t, l, "history", "rb1", "--json")
	wantCode(t, r, 0)
	wantContains(t, "history", r.stdout, `"command":"rollback"`, `"old_generation":3,"new_generation":2`)
}

func TestFailingHealthCheckRollsBack(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "health1"})
	deployOK(t, l, "health1", 1, "")
	good := running(t, l, "health1")

	// A command check that passes keeps the system.
	deployOK(t, l, "health1", 2, `deployment.healthChecks = { commands = [ "test -e /run/current-system/nixos-version" ]; timeout = 2; };`)
	if got := profile(t, l, "health1"); got != "system-2-link" {
		t.Fatalf("profile %q, want system-2-link", got)
	}
	good = running(t, l, "health1")

	// One that never passes is retried until its timeout, then rolled back.
	r := skiffOn(t, l, "deploy", "health1", confirm, "--flake", writeFlake(t, host("health1",
		`generation = 3; deployment.healthChecks = { commands = [ "test -e /run/no-such-file" ]; timeout = 2; };`)))
	wantCode(t, r, 4)
	wantContains(t, "error", r.stderr, `skiff: error: health1: check "test -e /run/no-such-file" failed: exit status 1; rolled back to generation 2`)
	wantContains(t, "summary", r.stdout, "rolled back", "health")
	if got := running(t, l, "health1"); got != good {
		t.Errorf("running %q, want generation 2 %q", got, good)
	}

	// A URL that is not http(s) is refused before any host is touched.
	r = skiffOn(t, l, "deploy", "health1", "--flake", writeFlake(t, host("health1", `deployment.healthChecks.urls = [ "ftp://x/" ];`)))
	wantCode(t, r, 2)
	wantContains(t, "error", r.stderr, `invalid URL "ftp://x/" in deployment.healthChecks.urls`)
}
