package e2e

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/lab"
	"github.com/skiffdeploy/skiff/internal/lab/nspawn"
)

// labRead runs argv inside host of lab l and returns its trimmed output.
func labRead(t *testing.T, l *lab.Lab, host string, argv ...string) string {
	t.Helper()
	out, err := l.Host(host).Exec(context.Background(), argv...)
	if err != nil {
		t.Fatalf("%s: %v", host, err)
	}
	return strings.TrimSpace(out)
}

func bootID(t *testing.T, l *lab.Lab, host string) string {
	t.Helper()
	return labRead(t, l, host, "cat", "/proc/sys/kernel/random/boot_id")
}

// TestRebootRollsWithTheCanary: --reboot with --canary 1 reboots the canary,
// waits until it is back on the new system, and only then deploys and
// reboots the other host. The login is not root: the reboot goes through sudo.
func TestRebootRollsWithTheCanary(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "rb1"}, lab.HostSpec{Name: "rb2"})
	flake := func(gen string) string {
		return writeFlake(t, host("rb1", "generation = "+gen+";")+host("rb2", "generation = "+gen+";"))
	}
	wantCode(t, skiffOn(t, l, "deploy", "--flake", flake("1")), 0)
	before := map[string]string{"rb1": bootID(t, l, "rb1"), "rb2": bootID(t, l, "rb2")}

	r := skiffOn(t, l, "deploy", "--reboot", "--canary", "1", "--target-user", "deploy", "--flake", flake("2"))
	wantCode(t, r, 0)
	wantContains(t, "progress", r.stderr, "rb1: reboot: rebooting (systemctl reboot)", "rb2: reboot: back after")
	for _, h := range []string{"rb1", "rb2"} {
		if id := bootID(t, l, h); id == before[h] || id == "" {
			t.Errorf("%s: boot id %q after the reboot, before %q", h, id, before[h])
		}
		want := labRead(t, l, h, "readlink", "-f", "/nix/var/nix/profiles/system")
		if cur := labRead(t, l, h, "readlink", "/run/current-system"); cur != want {
			t.Errorf("%s runs %s, want the new system %s", h, cur, want)
		}
		if booted := labRead(t, l, h, "readlink", "/run/booted-system"); booted != want {
			t.Errorf("%s booted %s, want %s", h, booted, want)
		}
	}
	// The canary was back before the second host was asked to reboot.
	log := l.RebootLog()
	want := []string{"rb1 reboot", "rb1 down", "rb1 up", "rb2 reboot", "rb2 down", "rb2 up"}
	if !slices.Equal(log, want) {
		t.Errorf("reboots %q, want %q", log, want)
	}
}

func TestRebootWithModeTestIsAUsageError(t *testing.T) {
	r := skiff(t, "deploy", "web1", "--mode", "test", "--reboot", "--flake", writeFlake(t, host("web1", "")))
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, "skiff: error: --reboot with --mode test", "skiff: hint: use --mode switch or --mode boot")
}

// TestRebootFailures: a host that does not come back, and one that boots
// another system than the deployed one, are failed with what they run.
func TestRebootFailures(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "rb3"})
	h := l.Host("rb3")
	flake := func(gen string) string { return writeFlake(t, host("rb3", "generation = "+gen+";")) }
	wantCode(t, skiffOn(t, l, "deploy", "--flake", flake("1")), 0)
	gen1 := labRead(t, l, "rb3", "readlink", "/run/current-system")

	t.Run("not back", func(t *testing.T) {
		h.HoldReboots(true)
		r := skiffOn(t, l, "deploy", "--reboot", "--reboot-timeout", "3s", "--flake", flake("2"))
		wantCode(t, r, 3)
		wantContains(t, "stderr", r.stderr, "skiff: error: rb3: did not come back within 3s of the reboot (last try: ",
			"before the reboot it ran ", "skiff: hint: check the host from its console")
		if row := summaryRow(t, r.stdout, "rb3"); row[1] != "failed" || row[len(row)-1] != "reboot" {
			t.Errorf("summary row %q, want failed with class reboot", row)
		}
		h.HoldReboots(false)
		if err := h.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		// Its boot default was the new system: it booted that.
		if cur := labRead(t, l, "rb3", "readlink", "/run/current-system"); cur == gen1 {
			t.Errorf("rb3 booted %s, the old system", cur)
		}
	})

	t.Run("boots the old system", func(t *testing.T) {
		if err := h.BootOnce(gen1); err != nil {
			t.Fatal(err)
		}
		r := skiffOn(t, l, "deploy", "--reboot", "--flake", flake("3"))
		wantCode(t, r, 3)
		wantContains(t, "stderr", r.stderr, "skiff: error: rb3: came back from its reboot running "+gen1+", not the deployed system ")
		if cur := labRead(t, l, "rb3", "readlink", "/run/current-system"); cur != gen1 {
			t.Errorf("rb3 runs %s, want %s (booted once)", cur, gen1)
		}
	})
}

// TestRebootRequiredByAnotherKernel: switching to a system with another
// kernel says the host needs a reboot (deploy note, JSON, status), and
// --reboot on the now up-to-date host reboots it into its kernel.
func TestRebootRequiredByAnotherKernel(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "rb4"})
	// A fresh lab host has booted nothing: the first system is booted.
	wantCode(t, skiffOn(t, l, "deploy", "--reboot", "--flake", writeFlake(t, host("rb4", ""))), 0)
	newKernel := writeFlake(t, host("rb4", `kernelVersion = "6.7.1";`))

	r := skiffOn(t, l, "deploy", "--json", "--flake", newKernel)
	wantCode(t, r, 0)
	_, hj := jsonHost(t, r.stdout, "rb4")
	const note = "needs a reboot: the running system's kernel and initrd are not the booted system's"
	if !hj.RebootRequired || hj.Note != note {
		t.Errorf("reboot_required %v, note %q; want true, %q", hj.RebootRequired, hj.Note, note)
	}
	wantContains(t, "events", r.stdout, note+"; deploy with --reboot")

	// Deployed again unchanged: the probe reads the links with the boot
	// state (the last deploy left the host running this system), and
	// that says the host needs a reboot without a boot read of its own.
	r = skiffOn(t, l, "-x", "deploy", "--json", "--flake", newKernel)
	wantCode(t, r, 0)
	if _, hj := jsonHost(t, r.stdout, "rb4"); hj.Result != "up to date" || !hj.RebootRequired || hj.Note != note {
		t.Errorf("unchanged: result %q, reboot_required %v, note %q; want up to date, true, %q", hj.Result, hj.RebootRequired, hj.Note, note)
	}
	if linksRead(r.stderr, "root@rb4") == "" {
		t.Errorf("the probe of an expected no-op did not read the links:\n%s", r.stderr)
	}
	if tr := sshTraceOf(r.stderr); len(tr.sessions) != 1 {
		t.Errorf("an up-to-date host needing a reboot: %d ssh commands, want 1 (the links with the boot state):\n%s", len(tr.sessions), tr)
	}

	r = skiffOn(t, l, "status", "--flake", newKernel)
	wantCode(t, r, 0)
	wantContains(t, "status", r.stdout, "REBOOT", "needed (kernel, initrd)")
	if got := statusReboot(t, skiffOn(t, l, "status", "--json", "--flake", newKernel)); got == nil || !*got {
		t.Errorf("status --json reboot_required %v, want true", got)
	}

	r = skiffOn(t, l, "deploy", "--reboot", "--flake", newKernel)
	wantCode(t, r, 0)
	wantContains(t, "progress", r.stderr, "rb4: reboot: back after")
	wantSummaryRow(t, summaryRow(t, r.stdout, "rb4"), "up to date", "2", "-", "")
	if got := statusReboot(t, skiffOn(t, l, "status", "--json", "--flake", newKernel)); got == nil || *got {
		t.Errorf("status --json reboot_required %v after the reboot, want false", got)
	}

	// --mode boot --reboot: the host runs the new system after its reboot.
	r = skiffOn(t, l, "deploy", "--mode", "boot", "--reboot", "--flake", writeFlake(t, host("rb4", `kernelVersion = "6.7.1"; generation = 2;`)))
	wantCode(t, r, 0)
	want := labRead(t, l, "rb4", "readlink", "-f", "/nix/var/nix/profiles/system")
	if cur := labRead(t, l, "rb4", "readlink", "/run/current-system"); cur != want {
		t.Errorf("rb4 runs %s after boot and reboot, want %s", cur, want)
	}
}

// TestRebootDarwin: a nix-darwin host reboots with shutdown -r now, and has
// no "needs a reboot" notion.
func TestRebootDarwin(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "rbmac", Darwin: true})
	before := bootID(t, l, "rbmac")
	r := skiffOn(t, l, "deploy", "--reboot", "--json", "--flake", writeMixedFlake(t, "", mac("rbmac", "")))
	wantCode(t, r, 0)
	wantContains(t, "events", r.stdout, "rebooting (shutdown -r now)", "back after")
	if _, hj := jsonHost(t, r.stdout, "rbmac"); !hj.Rebooted || hj.RebootRequired {
		t.Errorf("rebooted %v, reboot_required %v; want true, false", hj.Rebooted, hj.RebootRequired)
	}
	if id := bootID(t, l, "rbmac"); id == before {
		t.Errorf("boot id unchanged: %s", id)
	}
}

func statusReboot(t *testing.T, r result) *bool {
	t.Helper()
	var j struct {
		RebootRequired *bool `json:"reboot_required"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &j); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	return j.RebootRequired
}

// TestSystemdReboot: --reboot on a host with real systemd (a
// systemd-nspawn container, which gets a new boot id at every boot):
// systemctl reboot ends the container, which the test boots again as a
// machine's firmware would; skiff sees the new boot id, the deployed system
// and no newly failed unit.
func TestSystemdReboot(t *testing.T) {
	if err := nspawn.Available(""); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("cannot run the systemd-nspawn hosts in CI: %v", err)
		}
		t.Skipf("skipping the systemd hosts: %v", err)
	}
	const h = "sd-reboot"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	f, err := nspawn.Start(ctx, nspawn.Options{Dir: t.TempDir(), Hosts: []nspawn.HostSpec{{Name: h}}, Logf: t.Logf})
	if err != nil {
		t.Fatalf("start the systemd host: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Stop(); err != nil {
			t.Errorf("stop the systemd host: %v", err)
		}
	})
	host := f.Host(h)
	wantCode(t, sdDeploy(t, f, h, 1, "", ""), 0)
	before := on(t, f, h, "cat", "/proc/sys/kernel/random/boot_id")

	// The firmware: whenever the container ends, boot it again.
	bootCtx, stopBooting := context.WithCancel(ctx)
	var boots atomic.Int32
	booter := make(chan struct{})
	go func() {
		defer close(booter)
		for {
			select {
			case <-bootCtx.Done():
				return
			case <-host.Exited():
			}
			if bootCtx.Err() != nil {
				return
			}
			if err := host.Start(bootCtx); err != nil {
				t.Logf("boot %s again: %v", h, err)
				return
			}
			boots.Add(1)
		}
	}()
	t.Cleanup(func() { // before f.Stop
		stopBooting()
		<-booter
	})

	r := sdDeploy(t, f, h, 2, "", "", "--reboot")
	wantCode(t, r, 0)
	wantContains(t, "progress", r.stderr, "rebooting (systemctl reboot)", "back after")
	if boots.Load() != 1 {
		t.Errorf("the host booted %d times, want 1", boots.Load())
	}
	if id := on(t, f, h, "cat", "/proc/sys/kernel/random/boot_id"); id == before {
		t.Errorf("boot id %s unchanged", id)
	}
	want := on(t, f, h, "readlink", "-f", "/nix/var/nix/profiles/system")
	if got := on(t, f, h, "readlink", "/run/current-system"); got != want {
		t.Errorf("running %s after the reboot, want %s", got, want)
	}
	if got := try(f, h, "systemctl", "is-active", "demo-web.service"); got != "active" {
		t.Errorf("demo-web.service %s after the reboot", got)
	}
}
