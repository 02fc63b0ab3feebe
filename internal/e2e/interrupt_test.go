package e2e

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/lab"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// skiffBinary builds cmd/skiff once for tests that need a real process to
// signal.
func skiffBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		// A directory every user can reach: tests run this binary as
		// the lab's deploy user too, and the checkout may sit in a
		// private directory (mktemp -d). TestMain removes it.
		dir, err := os.MkdirTemp("", "skiff-e2e-bin-")
		if err == nil {
			err = os.Chmod(dir, 0o755)
		}
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "skiff")
		if out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/skiff").CombinedOutput(); err != nil {
			binErr = errors.New(string(out))
		}
	})
	if binErr != nil {
		t.Fatalf("build skiff: %v", binErr)
	}
	return binPath
}

// signalAt runs skiff as a process against the hosts of l, sends sig when
// a line of its standard error contains marker, and returns its exit code,
// what it printed and whether marker was seen. After a SIGKILL the rest of
// the output is not waited for: the killed deployer's children may still
// hold the pipe.
func signalAt(t *testing.T, l sshConfigured, sig syscall.Signal, marker string, args ...string) (int, string, bool) {
	t.Helper()
	cmd := exec.Command(skiffBinary(t), append([]string{"-F", l.SSHConfig(), "--nix-option", "substituters="}, args...)...)
	cmd.Env = append(cmd.Environ(), "SKIFF_HISTORY="+filepath.Join(t.TempDir(), "history.db"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stderr)
	sent := false
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if !sent && strings.Contains(sc.Text(), marker) {
			cmd.Process.Signal(sig)
			sent = true
			if sig == syscall.SIGKILL {
				go func() { _, _ = bufio.NewReader(stderr).WriteTo(new(strings.Builder)) }()
				break
			}
		}
	}
	if !sent { // the output ended without the marker
		cmd.Process.Kill()
	}
	err = cmd.Wait()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	}
	t.Logf("exit %d\n%s", code, out.String())
	return code, out.String(), sent
}

// interruptAt is signalAt with SIGINT, failing the test when marker never
// shows.
func interruptAt(t *testing.T, l *lab.Lab, marker string, args ...string) (int, string) {
	t.Helper()
	code, out, seen := signalAt(t, l, syscall.SIGINT, marker, args...)
	if !seen {
		t.Fatalf("never saw %q", marker)
	}
	return code, out
}

// supervisorState waits (bounded) until the state of the host's
// activation supervisor, read by read, is final, and returns it.
func supervisorState(read func() string) string {
	state := ""
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		state = read()
		if strings.HasPrefix(state, "rolled-back") || strings.HasPrefix(state, "committed") {
			break
		}
	}
	return state
}

func TestInterruptLetsAStartedActivationFinish(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "int1"})
	r := skiffOn(t, l, "deploy", "int1", "--flake", writeFlake(t, host("int1", "generation = 1;")))
	wantCode(t, r, 0)
	code, out := interruptAt(t, l, "int1: activate:", "deploy", "int1", "--flake",
		writeFlake(t, host("int1", "generation = 2; activationDelay = 2;")))
	if code != 130 {
		t.Errorf("exit %d, want 130", code)
	}
	wantContains(t, "output", out, "int1: done: deployed")
	if got := profileOf(t, l, "int1"); got != "system-2-link" {
		t.Errorf("profile %q: the started activation did not finish", got)
	}
}

func TestInterruptDuringCopyLeavesTheHostAlone(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "int2"})
	r := skiffOn(t, l, "deploy", "int2", "--flake", writeFlake(t, host("int2", "generation = 1;")))
	wantCode(t, r, 0)
	before := currentOf(t, l, "int2")
	// 256 MiB to copy: the interrupt lands while the copy runs.
	code, out := interruptAt(t, l, "int2: copy: copying", "deploy", "int2", "--flake",
		writeFlake(t, host("int2", "generation = 2; baseSize = 268435456;")))
	if code != 130 {
		t.Errorf("exit %d, want 130", code)
	}
	if strings.Contains(out, "int2: activate:") {
		t.Error("activation started after the interrupt")
	}
	if got := currentOf(t, l, "int2"); got != before {
		t.Errorf("running %q, want the untouched %q", got, before)
	}
	if got := profileOf(t, l, "int2"); got != "system-1-link" {
		t.Errorf("profile %q, want system-1-link", got)
	}
	if roots := rootsOn(t, l, "int2"); len(roots) != 0 {
		t.Errorf("the interrupted deploy left its GC root: %v", roots)
	}
	// The import's ssh command (the export stream is skiff's own).
	if out, _ := exec.Command("pgrep", "-f", "^ssh .*root@int2 .*skiff-import").Output(); len(out) > 0 {
		t.Errorf("the import's ssh still runs after skiff exited: pids %s", out)
	}
}

func currentOf(t *testing.T, l *lab.Lab, host string) string {
	t.Helper()
	out, _ := l.Host(host).Exec(t.Context(), "readlink", "/run/current-system")
	return strings.TrimSpace(out)
}
