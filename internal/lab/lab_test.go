package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireLab skips the test when this machine cannot run a lab, or fails it when
// CI=true (CI must run these tests).
func requireLab(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("lab not available in CI: %v", err)
		}
		t.Skipf("lab not available: %v", err)
	}
}

func startLab(t *testing.T, hosts []HostSpec) *Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := Start(ctx, Options{Dir: t.TempDir(), Hosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Stop(); err != nil {
			t.Errorf("stop lab: %v", err)
		}
	})
	return l
}

// sshRun runs a remote command with the real ssh client and the lab's ssh_config.
func sshRun(t *testing.T, l *Lab, target, command string, extra ...string) (string, error) {
	t.Helper()
	args := append([]string{"-F", l.SSHConfig(), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"}, extra...)
	args = append(args, target, command)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ssh", args...).CombinedOutput()
	return string(out), err
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	var xe *ExecError
	if errors.As(err, &xe) {
		return xe.ExitCode
	}
	if err == nil {
		return 0
	}
	return -1
}

func mustExec(t *testing.T, h *Host, args ...string) string {
	t.Helper()
	out, err := h.Exec(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLab(t *testing.T) {
	requireLab(t)
	l := startLab(t, []HostSpec{{Name: "h1", ExtraNixConf: "extra-platforms = aarch64-linux"}, {Name: "h2", StoreSize: 64 << 20}})
	h1, h2 := l.Host("h1"), l.Host("h2")
	ctx := context.Background()

	t.Run("nix.conf", func(t *testing.T) {
		for _, c := range []struct {
			h    *Host
			want string
		}{{h1, "aarch64-linux"}, {h2, ""}} {
			out := mustExec(t, c.h, "nix", "--extra-experimental-features", "nix-command", "show-config")
			var platforms, sandbox string
			for _, line := range strings.Split(out, "\n") {
				if k, v, ok := strings.Cut(line, " = "); ok && k == "extra-platforms" {
					platforms = v
				} else if ok && k == "sandbox" {
					sandbox = v
				}
			}
			if sandbox != "false" || strings.Contains(platforms, "aarch64-linux") != (c.want != "") {
				t.Errorf("%s: sandbox = %q, extra-platforms = %q", c.h.Name, sandbox, platforms)
			}
		}
	})

	t.Run("ssh", func(t *testing.T) {
		for _, target := range []string{"root@h1", "root@h2", "deploy@h1"} {
			out, err := sshRun(t, l, target, "echo ok")
			if err != nil || out != "ok\n" {
				t.Fatalf("ssh %s: %v: %q", target, err, out)
			}
		}
		out, err := sshRun(t, l, "deploy@h2", "sudo -n id -u && command -v systemctl")
		if err != nil || out != "0\n"+ShimDir+"/systemctl\n" {
			t.Fatalf("deploy sudo on h2: %v: %q", err, out)
		}
		out, err = sshRun(t, l, "deploy@h1", "cd && pwd && systemctl is-system-running")
		if err != nil || out != "/home/deploy\nrunning\n" {
			t.Fatalf("deploy without sudo: %v: %q", err, out)
		}
		if got := h1.Logins("root"); got != 1 {
			t.Errorf("h1 root logins = %d, want 1", got)
		}
		if got := h1.Logins("deploy"); got != 2 {
			t.Errorf("h1 deploy logins = %d, want 2", got)
		}
		// Host key checking is on: a wrong known host key is refused.
		bad := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(bad, []byte(h1.Addr+" "+l.PublicKey()+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err = sshRun(t, l, "root@h1", "true", "-o", "UserKnownHostsFile="+bad)
		if err == nil || !strings.Contains(out, "Host key verification failed") {
			t.Fatalf("ssh with a wrong host key: %v: %q", err, out)
		}
		// Locked out, then let in again (as from a console).
		if err := h1.SetAuthorizedKeys("deploy", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := sshRun(t, l, "deploy@h1", "true"); err == nil {
			t.Fatal("deploy logged in with no authorized key")
		}
		if err := h1.SetAuthorizedKeys("deploy", []string{l.PublicKey()}); err != nil {
			t.Fatal(err)
		}
		if out, err := sshRun(t, l, "deploy@h1", "true"); err != nil {
			t.Fatalf("deploy after restoring its key: %v: %s", err, out)
		}
	})

	t.Run("private nix and run", func(t *testing.T) {
		mustExec(t, h1, "sh", "-c", "echo one > /nix/lab-marker && echo one > /run/lab-marker")
		for _, p := range []string{"/nix/lab-marker", "/run/lab-marker"} {
			if out, err := h2.Exec(ctx, "cat", p); err == nil {
				t.Errorf("%s of h1 visible in h2: %q", p, out)
			}
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("%s of h1 visible on the machine: %v", p, err)
			}
		}
		if b, err := os.ReadFile(filepath.Join(h1.Dir, "nix", "lab-marker")); err != nil || string(b) != "one\n" {
			t.Errorf("h1's store dir: %q, %v", b, err)
		}
		// h2's /nix is a 64 MiB tmpfs.
		out := mustExec(t, h2, "df", "-P", "-B1", "/nix")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if f := strings.Fields(lines[len(lines)-1]); len(f) < 2 || f[1] != fmt.Sprint(64<<20) {
			t.Errorf("h2 /nix size: %q", out)
		}
	})

	t.Run("shims", func(t *testing.T) { testShims(t, h1, h2) })

	t.Run("stop", func(t *testing.T) {
		var ids []fileID
		for _, h := range l.Hosts() {
			id, err := statID(h.storeDir())
			if err != nil {
				t.Fatal(err)
			}
			if len(storeProcs(id)) < 3 { // sshd, keeper, nix-daemon
				t.Fatalf("%s runs %v", h.Name, storeProcs(id))
			}
			ids = append(ids, id)
		}
		// A long-running command inside h1, which Stop must end too.
		go func() { _, _ = h1.Exec(context.Background(), "sleep", "300") }()
		time.Sleep(100 * time.Millisecond)
		if err := l.Stop(); err != nil {
			t.Fatal(err)
		}
		for i, h := range l.Hosts() {
			if pids := storeProcs(ids[i]); len(pids) > 0 {
				t.Errorf("%s still runs %v", h.Name, pids)
			}
			if sshBanner(h.Addr) {
				t.Errorf("%s still listens", h.Name)
			}
			if m, _ := isMountPoint(h.storeDir()); m {
				t.Errorf("%s store still mounted", h.Name)
			}
		}
		if err := l.Stop(); err != nil {
			t.Fatalf("second stop: %v", err)
		}
		s, err := ReadState(l.Dir())
		if err != nil {
			t.Fatal(err)
		}
		for _, hs := range s.Hosts {
			if hs.PID != 0 || hs.Running() || hs.StoreMount != "" {
				t.Errorf("state after stop: %+v", hs)
			}
		}
	})
}

// testShims checks the systemctl and journalctl stand-ins against systemd 252's output.
func testShims(t *testing.T, h1, h2 *Host) {
	ctx := context.Background()
	check := func(h *Host, want string, args ...string) {
		t.Helper()
		got, err := h.Exec(ctx, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if got != want {
			t.Errorf("%v:\n got %q\nwant %q", args, got, want)
		}
	}
	check(h1, "  UNIT LOAD ACTIVE SUB DESCRIPTION\n0 loaded units listed.\n", "systemctl", "list-units", "--failed")
	check(h1, "", "systemctl", "list-units", "--failed", "--plain", "--no-legend", "--no-pager")
	check(h1, "[]\n", "systemctl", "list-units", "--failed", "--output=json")
	check(h1, "running\n", "systemctl", "is-system-running")

	const epoch = 1732686901
	stamp := time.Unix(epoch, 0).Format("Jan 02 15:04:05")
	journal := strings.Join([]string{
		fmt.Sprintf("%d\tdemo-web.service\th1\tsystemd[1]\tStarting demo-web.service - Demo web service...", epoch),
		fmt.Sprintf("%d\tdemo-web.service\th1\tdemo-web[812]\tlistening on :8080", epoch),
		fmt.Sprintf("%d\tdemo-web.service\th1\tsystemd[1]\tdemo-web.service: Main process exited, code=exited, status=1/FAILURE", epoch),
		fmt.Sprintf("%d\tdemo-web.service\th1\tsystemd[1]\tdemo-web.service: Failed with result 'exit-code'.", epoch),
		fmt.Sprintf("%d\tdemo-web.service\th1\tsystemd[1]\tFailed to start demo-web.service - Demo web service.", epoch),
		"",
	}, "\n")
	if err := h1.WriteFile(ctx, "/run/lab-systemd/journal", []byte(journal)); err != nil {
		t.Fatal(err)
	}
	if err := h1.WriteFile(ctx, "/run/lab-systemd/units/demo-web.service", []byte("loaded failed failed Demo web service\n")); err != nil {
		t.Fatal(err)
	}

	check(h1, "  UNIT             LOAD   ACTIVE SUB    DESCRIPTION\n"+
		"● demo-web.service loaded failed failed Demo web service\n\n"+
		"LOAD   = Reflects whether the unit definition was properly loaded.\n"+
		"ACTIVE = The high-level unit activation state, i.e. generalization of SUB.\n"+
		"SUB    = The low-level unit activation state, values depend on unit type.\n"+
		"1 loaded units listed.\n", "systemctl", "list-units", "--failed", "--no-pager")
	check(h1, "demo-web.service loaded failed failed Demo web service\n", "systemctl", "list-units", "--failed", "--plain", "--no-legend")
	check(h1, `[{"unit":"demo-web.service","load":"loaded","active":"failed","sub":"failed","description":"Demo web service"}]`+"\n",
		"systemctl", "list-units", "--failed", "-o", "json")
	check(h1, "  UNIT             LOAD   ACTIVE SUB     DESCRIPTION\n"+
		"● demo-web.service loaded failed failed  Demo web service\n"+
		"  sshd.service     loaded active running OpenSSH Daemon\n\n"+
		"LOAD   = Reflects whether the unit definition was properly loaded.\n"+
		"ACTIVE = The high-level unit activation state, i.e. generalization of SUB.\n"+
		"SUB    = The low-level unit activation state, values depend on unit type.\n"+
		"2 loaded units listed. Pass --all to see loaded but inactive units, too.\n"+
		"To show all installed unit files use 'systemctl list-unit-files'.\n", "systemctl", "list-units")
	check(h1, "active\n", "systemctl", "is-active", "sshd")

	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"systemctl", "is-system-running"}, 1, "degraded\n"},
		{[]string{"systemctl", "is-active", "demo-web.service"}, 3, "failed\n"},
		{[]string{"systemctl", "--bogus"}, 1, ""},
		{[]string{"journalctl", "--bogus"}, 1, ""},
	} {
		out, err := h1.Exec(ctx, c.args...)
		if exitCode(err) != c.code || out != c.out {
			t.Errorf("%v: exit %d %q, want exit %d %q", c.args, exitCode(err), out, c.code, c.out)
		}
	}
	_, err := h1.Exec(ctx, "systemctl", "--bogus")
	var xe *ExecError
	if !errors.As(err, &xe) || xe.Stderr != "systemctl: unrecognized option '--bogus'\n" {
		t.Errorf("systemctl --bogus: %v", err)
	}

	out, err := h1.Exec(ctx, "systemctl", "status", "demo-web")
	if exitCode(err) != 3 || !strings.HasPrefix(out, "× demo-web.service - Demo web service\n     Loaded: loaded (") ||
		!strings.Contains(out, "     Active: failed (Result: exit-code) since ") ||
		!strings.HasSuffix(out, stamp+" h1 systemd[1]: Failed to start demo-web.service - Demo web service.\n") {
		t.Errorf("systemctl status demo-web: exit %d:\n%s", exitCode(err), out)
	}

	check(h1, stamp+" h1 systemd[1]: demo-web.service: Failed with result 'exit-code'.\n"+
		stamp+" h1 systemd[1]: Failed to start demo-web.service - Demo web service.\n",
		"journalctl", "-u", "demo-web.service", "-n", "2", "--no-pager")
	check(h1, "-- No entries --\n", "journalctl", "-u", "nothing.service", "-n", "5", "--no-pager")
	check(h2, "-- No entries --\n", "journalctl", "-u", "demo-web.service", "--no-pager")

	out = mustExec(t, h1, "journalctl", "-u", "demo-web", "-n", "2", "-o", "json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("journalctl -o json: %q", out)
	}
	var e map[string]string
	if err := json.Unmarshal([]byte(lines[1]), &e); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"MESSAGE": "Failed to start demo-web.service - Demo web service.", "UNIT": "demo-web.service",
		"_SYSTEMD_UNIT": "init.scope", "__REALTIME_TIMESTAMP": fmt.Sprint(epoch * 1000000), "PRIORITY": "3",
		"_HOSTNAME": "h1", "SYSLOG_IDENTIFIER": "systemd", "_PID": "1",
	}
	for k, v := range want {
		if e[k] != v {
			t.Errorf("journal entry %s = %q, want %q (%s)", k, e[k], v, lines[1])
		}
	}
	out = mustExec(t, h1, "journalctl", "-u", "demo-web", "-t", "demo-web", "-o", "json")
	if err := json.Unmarshal([]byte(out), &e); err != nil || e["_SYSTEMD_UNIT"] != "demo-web.service" || e["MESSAGE"] != "listening on :8080" {
		t.Errorf("service's own entry: %v %q", err, out)
	}

	// The host's shims, not the machine's systemctl, serve SSH sessions.
	h2Out, err := h2.Exec(ctx, "systemctl", "list-units", "--failed", "--plain", "--no-legend")
	if err != nil || h2Out != "" {
		t.Errorf("h2 sees h1's state: %v %q", err, h2Out)
	}
}

func TestHostRestart(t *testing.T) {
	requireLab(t)
	l := startLab(t, []HostSpec{{Name: "h1"}})
	h := l.Host("h1")
	ctx := context.Background()
	mustExec(t, h, "sh", "-c", "echo x > /run/lab-marker")

	if err := h.StopSSHD(); err != nil {
		t.Fatal(err)
	}
	if out, err := sshRun(t, l, "root@h1", "true"); err == nil || !strings.Contains(out, "Connection refused") {
		t.Fatalf("ssh with sshd stopped: %v: %q", err, out)
	}
	if out := mustExec(t, h, "cat", "/run/lab-marker"); out != "x\n" {
		t.Fatalf("/run lost while only sshd stopped: %q", out)
	}
	if err := h.StartSSHD(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := sshRun(t, l, "root@h1", "cat /run/lab-marker"); err != nil || out != "x\n" {
		t.Fatalf("after StartSSHD: %v: %q", err, out)
	}

	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Exec(ctx, "true"); err == nil {
		t.Fatal("exec in a stopped host succeeded")
	}
	if err := h.Stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(ctx); err == nil {
		t.Fatal("starting a running host succeeded")
	}
	if out, err := h.Exec(ctx, "cat", "/run/lab-marker"); err == nil {
		t.Fatalf("/run survived a restart: %q", out)
	}
	if out, err := sshRun(t, l, "root@h1", "systemctl is-active sshd"); err != nil || out != "active\n" {
		t.Fatalf("after restart: %v: %q", err, out)
	}
	if got := h.Logins("root"); got != 2 {
		t.Errorf("root logins = %d, want 2 (the log survives restarts)", got)
	}
}

func TestDown(t *testing.T) {
	requireLab(t)
	l := startLab(t, []HostSpec{{Name: "h1", StoreSize: 16 << 20}})
	h := l.Host("h1")
	id, err := statID(h.storeDir())
	if err != nil {
		t.Fatal(err)
	}
	// Down works from the state file alone, as skiff-lab down in another process.
	if err := Down(l.Dir()); err != nil {
		t.Fatal(err)
	}
	if pids := storeProcs(id); len(pids) > 0 {
		t.Errorf("still running: %v", pids)
	}
	if m, _ := isMountPoint(h.storeDir()); m {
		t.Error("store still mounted")
	}
	if err := Down(l.Dir()); err != nil {
		t.Fatalf("second down: %v", err)
	}
}

func TestSudoPassword(t *testing.T) {
	requireLab(t)
	l := startLab(t, []HostSpec{{Name: "h1", SudoPassword: "s3cret"}})
	out, err := sshRun(t, l, "deploy@h1", "sudo -n true")
	if err == nil || !strings.Contains(out, "a password is required") {
		t.Fatalf("sudo -n with a password: %v: %q", err, out)
	}
	cmd := exec.Command("ssh", "-F", l.SSHConfig(), "-o", "BatchMode=yes", "deploy@h1", "sudo -S -p '' id -u")
	cmd.Stdin = strings.NewReader("s3cret\n")
	b, err := cmd.CombinedOutput()
	if err != nil || string(b) != "0\n" {
		t.Fatalf("sudo -S: %v: %q", err, b)
	}
}
