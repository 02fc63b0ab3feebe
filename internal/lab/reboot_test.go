package lab

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// waitReboots waits until the lab's reboot log has n entries.
func waitReboots(t *testing.T, l *Lab, n int) []string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		log := l.RebootLog()
		if len(log) >= n || time.Now().After(deadline) {
			return log
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReboot: systemctl reboot over ssh (as root, and as deploy through
// sudo; refused without it) and shutdown -r reboot the host: a fresh /run,
// a new boot id where programs read the kernel's, sshd back.
func TestReboot(t *testing.T) {
	requireLab(t)
	l := startLab(t, []HostSpec{{Name: "h1"}})
	h := l.Host("h1")
	bootID := func() string {
		return strings.TrimSpace(mustExec(t, h, "cat", "/proc/sys/kernel/random/boot_id"))
	}
	first := bootID()
	if own := strings.TrimSpace(mustExec(t, h, "cat", "/run/lab-systemd/proc-boot-id")); own != first || len(first) != 36 {
		t.Fatalf("boot id %q, the host's file %q", first, own)
	}
	mustExec(t, h, "sh", "-c", "echo x > /run/lab-marker")

	if out, err := sshRun(t, l, "deploy@h1", "systemctl reboot"); err == nil || !strings.Contains(out, "Access denied") {
		t.Fatalf("reboot without privileges: %v: %q", err, out)
	}
	if out, err := sshRun(t, l, "deploy@h1", "sudo -n systemctl reboot"); err != nil && exitCode(err) != 255 {
		t.Fatalf("sudo systemctl reboot: %v: %q", err, out)
	}
	if log := waitReboots(t, l, 3); !slices.Equal(log, []string{"h1 reboot", "h1 down", "h1 up"}) {
		t.Fatalf("reboot log %q", log)
	}
	second := bootID()
	if second == first {
		t.Errorf("boot id unchanged after the reboot: %s", second)
	}
	if out, err := h.Exec(t.Context(), "cat", "/run/lab-marker"); err == nil {
		t.Errorf("/run survived the reboot: %q", out)
	}
	if out, err := sshRun(t, l, "root@h1", "shutdown -r now"); err != nil && exitCode(err) != 255 {
		t.Fatalf("shutdown -r now: %v: %q", err, out)
	}
	waitReboots(t, l, 6)
	if bootID() == second {
		t.Error("boot id unchanged after shutdown -r")
	}
	if out, err := sshRun(t, l, "root@h1", "shutdown -h now"); err == nil || !strings.Contains(out, "only reboots") {
		t.Errorf("shutdown -h: %v: %q", err, out)
	}
}
