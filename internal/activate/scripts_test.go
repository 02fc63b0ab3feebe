package activate

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The host-side scripts run under dash (the strictest common /bin/sh) with
// a fake switch-to-configuration and a fake nix-env in a temp dir.

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed", name)
	}
	return p
}

func TestScriptsPassShellcheck(t *testing.T) {
	sc := needTool(t, "shellcheck")
	files, err := filepath.Glob("scripts/*.sh")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	out, err := exec.Command(sc, append([]string{"-S", "warning", "-s", "sh"}, files...)...).CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// supHost is a temp dir laid out for one supervisor run: new/ and old/
// systems whose switch-to-configuration logs its calls, a fake nix-env
// that keeps a profile in prof/, and bin/ first on PATH.
type supHost struct {
	t    *testing.T
	root string
	dir  string // the supervisor's state dir
	env  []string
	done chan error // the supervisor's exit
	// extra are arguments after the profile (INSTALL).
	extra []string
}

func newSupHost(t *testing.T) *supHost {
	h := &supHost{t: t, root: t.TempDir()}
	h.dir = filepath.Join(h.root, "act")
	for _, d := range []string{"new/bin", "old/bin", "bin", "prof", "act"} {
		if err := os.MkdirAll(filepath.Join(h.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	calls := filepath.Join(h.root, "calls")
	for _, sys := range []string{"new", "old"} {
		// The exit code of "ACTION" comes from the file SYS.ACTION.rc.
		h.write(sys+"/bin/switch-to-configuration", fmt.Sprintf(`#!/bin/sh
echo "%[1]s $1${NIXOS_INSTALL_BOOTLOADER:+ install=$NIXOS_INSTALL_BOOTLOADER}" >>%[2]q
rc=0
[ -f %[3]q/%[1]s.$1.rc ] && read -r rc <%[3]q/%[1]s.$1.rc
exit "$rc"
`, sys, calls, h.root))
	}
	h.write("bin/nix-env", fmt.Sprintf(`#!/bin/sh
# nix-env -p PROFILE --set PATH | --switch-generation N | --delete-generations N
echo "nix-env $3 $4" >>%[1]q
p=$2
case $3 in
--set) ln -sfn "$4" "$p-2-link" && ln -sfn "${p##*/}-2-link" "$p" ;;
--switch-generation) ln -sfn "${p##*/}-$4-link" "$p" ;;
--delete-generations) rm -f "$p-$4-link" ;;
esac
`, calls))
	h.env = []string{"PATH=" + filepath.Join(h.root, "bin") + ":/usr/bin:/bin", "LC_ALL=C"}
	return h
}

func (h *supHost) write(rel, content string) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.root, rel), []byte(content), 0o755); err != nil {
		h.t.Fatal(err)
	}
}

func (h *supHost) profile() string { return filepath.Join(h.root, "prof", "system") }

// start runs script (the supervisor, possibly edited) under dash.
func (h *supHost) start(script string, window int, gen string) *exec.Cmd {
	h.t.Helper()
	args := append([]string{"-c", script, "skiff-supervisor", h.dir,
		filepath.Join(h.root, "new"), filepath.Join(h.root, "old"), fmt.Sprint(window), gen, h.profile()}, h.extra...)
	cmd := exec.Command(needTool(h.t, "dash"), args...)
	cmd.Env = h.env
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.done = make(chan error, 1)
	go func() { h.done <- cmd.Wait() }()
	h.t.Cleanup(func() { _ = cmd.Process.Kill(); <-h.done })
	return cmd
}

// exit waits for the supervisor to end and returns its exit error.
func (h *supHost) exit() error {
	err := <-h.done
	h.done <- err
	return err
}

func (h *supHost) state() string {
	b, _ := os.ReadFile(filepath.Join(h.dir, "state"))
	return strings.TrimSpace(string(b))
}

// waitState waits, with a generous bound, until the state satisfies ok.
func (h *supHost) waitState(bound time.Duration, ok func(string) bool) string {
	h.t.Helper()
	for end := time.Now().Add(bound); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if s := h.state(); ok(s) {
			return s
		}
	}
	return h.state()
}

func (h *supHost) final(bound time.Duration) string {
	return h.waitState(bound, func(s string) bool { return State{Phase: strings.Fields(s + " x")[0]}.Final() })
}

func (h *supHost) calls() []string {
	b, _ := os.ReadFile(filepath.Join(h.root, "calls"))
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// decide writes the deployer's decision with decideScript.
func (h *supHost) decide(decision string) error {
	cmd := exec.Command(needTool(h.t, "dash"), "-c", decideScript, "sh", h.dir, decision)
	cmd.Env = h.env
	return cmd.Run()
}

// fakeDate puts a date on PATH that prints the wall clock shifted by
// offset seconds, from its call number from on (earlier calls are true).
func (h *supHost) fakeDate(offset, from int) {
	h.write("bin/date", fmt.Sprintf(`#!/bin/sh
n=0
[ -f %[1]q/date.calls ] && read -r n <%[1]q/date.calls
n=$((n + 1))
echo "$n" >%[1]q/date.calls
off=0
[ "$n" -ge %[2]d ] && off=%[3]d
exec /bin/date -d "@$(($(/bin/date +%%s) + off))" "$@"
`, h.root, from, offset))
}

func activated(s string) bool { return strings.HasPrefix(s, "activated") }

func TestSupervisorCommitsOnTheDeployersWord(t *testing.T) {
	for _, tc := range []struct {
		name      string
		gen       string
		wantCalls []string
	}{
		{"new generation", "", []string{"new test", "nix-env --set " + "NEW", "new boot"}},
		{"existing generation", "41", []string{"new test", "nix-env --switch-generation 41", "new boot"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newSupHost(t)
			h.start(Supervisor, 30, tc.gen)
			if s := h.waitState(20*time.Second, activated); s != "activated 0" {
				t.Fatalf("state %q, want activated 0", s)
			}
			if err := h.decide("commit"); err != nil {
				t.Fatal(err)
			}
			want := "committed system-2-link"
			if tc.gen != "" {
				want = "committed system-41-link"
			}
			if s := h.final(20 * time.Second); s != want {
				t.Errorf("state %q, want %q", s, want)
			}
			want2 := slicesReplace(tc.wantCalls, "NEW", filepath.Join(h.root, "new"))
			if d := cmp.Diff(want2, h.calls()); d != "" {
				t.Errorf("calls (-want +got):\n%s", d)
			}
			if err := h.decide("rollback late"); err == nil {
				t.Error("a second decision was accepted")
			}
			if err := h.exit(); err != nil {
				t.Errorf("supervisor exit: %v", err)
			}
			if _, err := os.Stat(filepath.Join(h.dir, "pid")); !os.IsNotExist(err) {
				t.Errorf("pid file left behind: %v", err)
			}
		})
	}
}

// INSTALL 1: switch-to-configuration runs with NIXOS_INSTALL_BOOTLOADER=1,
// as nixos-rebuild --install-bootloader runs it, in the boot step that
// makes the new system the boot default (test ignores it).
func TestSupervisorInstallsTheBootLoaderWhenAsked(t *testing.T) {
	h := newSupHost(t)
	h.extra = []string{"1"}
	h.start(Supervisor, 30, "")
	if s := h.waitState(20*time.Second, activated); s != "activated 0" {
		t.Fatalf("state %q, want activated 0", s)
	}
	if err := h.decide("commit"); err != nil {
		t.Fatal(err)
	}
	if s := h.final(20 * time.Second); s != "committed system-2-link" {
		t.Errorf("state %q, want committed", s)
	}
	want := []string{"new test install=1", "nix-env --set " + filepath.Join(h.root, "new"), "new boot install=1"}
	if d := cmp.Diff(want, h.calls()); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
}

func slicesReplace(s []string, old, new string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = strings.ReplaceAll(v, old, new)
	}
	return out
}

func TestSupervisorRollsBackOnTheDeployersWord(t *testing.T) {
	h := newSupHost(t)
	h.write("new.test.rc", "4\n")
	h.start(Supervisor, 30, "")
	if s := h.waitState(20*time.Second, activated); s != "activated 4" {
		t.Fatalf("state %q, want activated 4", s)
	}
	if err := h.decide("rollback newly failed units web.service"); err != nil {
		t.Fatal(err)
	}
	if s := h.final(20 * time.Second); s != "rolled-back 0 newly failed units web.service" {
		t.Errorf("state %q", s)
	}
	if d := cmp.Diff([]string{"new test", "old test"}, h.calls()); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
}

func TestSupervisorUndoesAFailedBootDefault(t *testing.T) {
	h := newSupHost(t)
	// The profile is at generation 1 (the old system).
	if err := os.Symlink(filepath.Join(h.root, "old"), h.profile()+"-1-link"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("system-1-link", h.profile()); err != nil {
		t.Fatal(err)
	}
	h.write("new.boot.rc", "1\n")
	h.start(Supervisor, 30, "")
	h.waitState(20*time.Second, activated)
	if err := h.decide("commit"); err != nil {
		t.Fatal(err)
	}
	if s := h.final(20 * time.Second); s != "rolled-back 0 making the new system the boot default failed" {
		t.Errorf("state %q", s)
	}
	if l, _ := os.Readlink(h.profile()); l != "system-1-link" {
		t.Errorf("profile points at %q, want system-1-link", l)
	}
	if _, err := os.Lstat(h.profile() + "-2-link"); !os.IsNotExist(err) {
		t.Errorf("generation 2 left behind: %v", err)
	}
}

// The window is counted on a monotonic clock: a wall clock stepped by an
// hour in either direction (activation restarting chronyd) neither rolls
// back a system the deployer confirms in time nor keeps an unconfirmed one
// for an hour.
func TestSupervisorWindowIgnoresWallClockSteps(t *testing.T) {
	t.Run("stepped forward", func(t *testing.T) {
		h := newSupHost(t)
		h.fakeDate(3600, 2) // the clock jumps after the first reading
		h.start(Supervisor, 30, "")
		if s := h.waitState(20*time.Second, activated); s != "activated 0" {
			t.Fatalf("state %q", s)
		}
		time.Sleep(300 * time.Millisecond) // several turns of the wait loop
		if err := h.decide("commit"); err != nil {
			t.Fatalf("the confirmation came too late: %v (state %q)", err, h.state())
		}
		if s := h.final(20 * time.Second); s != "committed system-2-link" {
			t.Errorf("state %q, want committed", s)
		}
	})
	t.Run("stepped back", func(t *testing.T) {
		h := newSupHost(t)
		h.fakeDate(-3600, 2)
		h.start(Supervisor, 1, "")
		// Nobody confirms: the host rolls back one window (+1 s) after
		// activating; the bound is far below the hour of the step.
		s := h.final(20 * time.Second)
		if s != "rolled-back 0 not confirmed within 1s: the deployer vanished or lost SSH access" {
			t.Errorf("state %q, want rolled back by the supervisor", s)
		}
	})
}

// Without /proc/uptime (macOS) the window is the sum of the naps.
func TestSupervisorWindowWithoutProcUptime(t *testing.T) {
	h := newSupHost(t)
	h.fakeDate(-3600, 2)
	script := strings.ReplaceAll(Supervisor, "/proc/uptime", filepath.Join(h.root, "no-uptime"))
	h.start(script, 1, "")
	if s := h.final(20 * time.Second); !strings.HasPrefix(s, "rolled-back 0 not confirmed within 1s") {
		t.Errorf("state %q, want rolled back by the supervisor", s)
	}
}

// With the FIFOs and without /proc/uptime, the window's clock is the sum
// of what the ticker's naps slept (half a second, then a second each):
// a window of 2 s (3 s with its margin) takes four naps, where a ticker
// of half a second took six.
func TestSupervisorWindowCountsTheTickersNaps(t *testing.T) {
	h := newSupHost(t)
	mkfifos(t, h.dir)
	bin, log := loggingBin(t, "sleep")
	h.env[0] = "PATH=" + bin + ":" + strings.TrimPrefix(h.env[0], "PATH=")
	script := strings.ReplaceAll(Supervisor, "/proc/uptime", filepath.Join(h.root, "no-uptime"))
	h.start(script, 2, "")
	if s := h.final(20 * time.Second); !strings.HasPrefix(s, "rolled-back 0 not confirmed within 2s") {
		t.Errorf("state %q, want rolled back by the supervisor", s)
	}
	if n := ran(t, log)["sleep"]; n < 3 || n > 5 {
		t.Errorf("the window took %d naps, want 4 (half a second, then a second each)", n)
	}
}

func TestStatusAndLaunchScripts(t *testing.T) {
	dash := needTool(t, "dash")
	root := t.TempDir()
	dir := filepath.Join(root, "act")
	run := func(script string, args ...string) (string, error) {
		out, err := exec.Command(dash, append([]string{"-c", script, "sh"}, args...)...).Output()
		return string(out), err
	}
	// launch-file.sh writes the supervisor byte for byte and starts the
	// command (its /run/skiff is moved into the temp dir).
	launch := strings.ReplaceAll(launchFileScript, "/run/skiff", filepath.Join(root, "run-skiff"))
	if out, err := run(launch, dir, Supervisor, "sh", "-c", "echo started"); err != nil {
		t.Fatalf("launch: %v %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "supervisor"))
	if err != nil || string(b) != Supervisor+"\n" {
		t.Errorf("supervisor file differs from the script (%v)", err)
	}
	if fi, _ := os.Stat(dir); fi == nil || fi.Mode().Perm() != fs.FileMode(0o700) {
		t.Errorf("state dir mode %v, want 0700", fi)
	}
	for _, f := range []string{"wake", "poke"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
			t.Errorf("launch made no FIFO %s: %v", f, err)
		}
	}
	if out, err := run(launch, dir, Supervisor, "true"); err == nil {
		t.Errorf("a second launch into the same dir succeeded: %s", out)
	}

	os.WriteFile(filepath.Join(dir, "state"), []byte("activated 0\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "log"), []byte("line1\nline2\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "pid"), []byte(fmt.Sprint(os.Getpid())), 0o600)
	out, err := run(statusScript, dir, "7", "", "0")
	if err != nil {
		t.Fatal(err)
	}
	want := State{Phase: "activated", Running: true, Output: []byte("line2\n")}
	if d := cmp.Diff(want, ParseState([]byte(out))); d != "" {
		t.Errorf("status (-want +got):\n%s", d)
	}
	out, _ = run(detectScript)
	if out != "systemd\n" && out != "plain\n" {
		t.Errorf("detect printed %q", out)
	}
}

// A supervisor that starts between the status script's liveness read and
// its state read (pid, then state, written in that order) is running, not
// "stopped in state activating".
func TestStatusSeesASupervisorStartingBetweenItsReads(t *testing.T) {
	dash := needTool(t, "dash")
	dir := t.TempDir()
	// The supervisor "starts" while the state is read: the state is a
	// FIFO, whose writer writes the pid file once status.sh opened it to
	// read, then the state.
	state := filepath.Join(dir, "state")
	if err := syscall.Mkfifo(state, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		f, err := os.OpenFile(state, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer f.Close()
		_ = os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
		_, _ = f.WriteString("activating\n")
	}()
	cmd := exec.Command(dash, "-c", statusScript, "sh", dir, "1", "", "0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if st := ParseState(out); st.Phase != "activating" || !st.Running {
		t.Errorf("status = %+v, want activating and running", st)
	}
}

// setState replaces the supervisor's state line in dir at once, as
// supervisor.sh does.
func setState(dir, line string) {
	os.WriteFile(filepath.Join(dir, "state.tmp"), []byte(line), 0o600)
	os.Rename(filepath.Join(dir, "state.tmp"), filepath.Join(dir, "state"))
}

// statusFollow is status.sh following the supervisor in dir from byte
// offset off for up to n tenths of a second, as on the host's session:
// the state and liveness go to descriptor 3, written to the file vals.
func statusFollow(ctx context.Context, t *testing.T, dash, dir, off, n string) (cmd *exec.Cmd, vals string) {
	vals = filepath.Join(t.TempDir(), "vals")
	cmd = exec.CommandContext(ctx, dash, "-c", `exec 3>"$1"; shift; `+"sh -c \"$0\" sh \"$@\"", statusScript, vals, dir, off, "", n, "follow")
	return cmd, vals
}

// On the host's session, status.sh follows: it prints the log as it grows,
// does not stop for output or for "activating", and ends with the state
// and liveness on descriptor 3 once the state changes.
func TestStatusFollowsUntilTheStateChanges(t *testing.T) {
	dash := needTool(t, "dash")
	dir := t.TempDir()
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("state", "activating\n")
	write("log", "old\n")
	write("pid", fmt.Sprint(os.Getpid()))
	// The "supervisor": more output, then the end of the activation.
	go func() {
		time.Sleep(300 * time.Millisecond)
		f, _ := os.OpenFile(filepath.Join(dir, "log"), os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString("new 1\n")
		time.Sleep(300 * time.Millisecond)
		f.WriteString("new 2\n")
		f.Close()
		setState(dir, "activated 4\n")
	}()
	cmd, vals := statusFollow(context.Background(), t, dash, dir, "5", "100")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "new 1\nnew 2\n" {
		t.Errorf("followed output %q, want both new lines", out)
	}
	b, _ := os.ReadFile(vals)
	if st := ParseState(b); st.Phase != "activated" || st.Code != 4 || !st.Running {
		t.Errorf("state on descriptor 3: %q", b)
	}
}

// A follow that starts before the supervisor has made its log says
// nothing of the missing file: on the session its standard error joins the
// output, which the deployer counts as the log's bytes (a message there
// once shifted the offset and cut the log's first line).
func TestStatusFollowBeforeTheLogExists(t *testing.T) {
	dash := needTool(t, "dash")
	dir := t.TempDir()
	go func() {
		time.Sleep(300 * time.Millisecond)
		os.WriteFile(filepath.Join(dir, "pid"), []byte(fmt.Sprint(os.Getpid())), 0o600)
		os.WriteFile(filepath.Join(dir, "log"), []byte("first\n"), 0o600)
		setState(dir, "activated 0\n")
	}()
	cmd, _ := statusFollow(context.Background(), t, dash, dir, "1", "100")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if string(out) != "first\n" {
		t.Errorf("followed output and errors %q, want the log's line only", out)
	}
}

// decide.sh records the decision once and returns the final state with
// the output after the offset; a second decision is too late (exit 3) but
// still gets the final state.
func TestDecideWaitsForTheFinalState(t *testing.T) {
	dash := needTool(t, "dash")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "state"), []byte("activated 0\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "log"), []byte("seen\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "pid"), []byte(fmt.Sprint(os.Getpid())), 0o600)
	go func() {
		for {
			if _, err := os.Stat(filepath.Join(dir, "decision")); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		f, _ := os.OpenFile(filepath.Join(dir, "log"), os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString("committing\n")
		f.Close()
		setState(dir, "committed system-9-link\n")
	}()
	run := func(decision string) (string, int) {
		out, err := exec.Command(dash, "-c", decideScript, "sh", dir, decision, "6", "100").Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	out, code := run("commit")
	verdict, rest, _ := strings.Cut(out, "\n")
	st := ParseState([]byte(rest))
	if verdict != "decided" || code != 0 || st.Phase != "committed" || st.Generation() != 9 || string(st.Output) != "committing\n" {
		t.Errorf("decide: %q (exit %d)", out, code)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "decision")); string(b) != "commit\n" {
		t.Errorf("decision file %q", b)
	}
	out, code = run("rollback late")
	if verdict, rest, _ := strings.Cut(out, "\n"); verdict != "too-late" || code != 3 || ParseState([]byte(rest)).Phase != "committed" {
		t.Errorf("late decide: %q (exit %d)", out, code)
	}
	// "wait" records nothing and waits the same way, without the output.
	out, code = run("wait")
	if out != "waiting\ncommitted system-9-link\n1\n" || code != 0 {
		t.Errorf("wait: %q (exit %d)", out, code)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "decision")); string(b) != "commit\n" {
		t.Errorf("decision file %q after a wait", b)
	}
}

// decide.sh's wait, sent on the host's session alongside the proof,
// returns only once the supervisor has ended: not while it still awaits a
// decision.
func TestDecideWaitReturnsAtTheSupervisorsEnd(t *testing.T) {
	dash := needTool(t, "dash")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "state"), []byte("activated 0\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "pid"), []byte(fmt.Sprint(os.Getpid())), 0o600)
	done := make(chan string, 1)
	go func() {
		out, _ := exec.Command(dash, "-c", decideScript, "sh", dir, "wait", "1", "100").Output()
		done <- string(out)
	}()
	select {
	case out := <-done:
		t.Fatalf("wait returned before the supervisor ended: %q", out)
	case <-time.After(1500 * time.Millisecond):
	}
	if _, err := os.Stat(filepath.Join(dir, "decided")); err == nil {
		t.Error("wait recorded a decision")
	}
	setState(dir, "rolled-back 0 not confirmed\n")
	select {
	case out := <-done:
		if st := ParseState([]byte(strings.TrimPrefix(out, "waiting\n"))); !strings.HasPrefix(out, "waiting\n") || st.Phase != "rolled-back" {
			t.Errorf("wait printed %q", out)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not return after the supervisor ended")
	}
}

// blockingSleep puts on PATH a sleep that sleeps far longer than asked:
// a script that polls with sleep then waits that long, one woken by
// events does not.
func blockingSleep(t *testing.T, bin string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(bin, "sleep"), []byte("#!/bin/sh\nexec /bin/sleep 20\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func mkfifos(t *testing.T, dir string) {
	t.Helper()
	for _, f := range []string{"wake", "poke"} {
		if err := syscall.Mkfifo(filepath.Join(dir, f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// With the FIFOs launch.sh makes, nothing waits by sleeping: decide.sh
// wakes the supervisor, which commits and wakes decide.sh with the final
// state, while every sleep on the host would take 20 s.
func TestSupervisorAndDecideWakeEachOther(t *testing.T) {
	h := newSupHost(t)
	mkfifos(t, h.dir)
	h.start(Supervisor, 30, "")
	if s := h.waitState(20*time.Second, activated); s != "activated 0" {
		t.Fatalf("state %q, want activated 0", s)
	}
	blockingSleep(t, filepath.Join(h.root, "bin"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, needTool(t, "dash"), "-c", decideScript, "sh", h.dir, "commit", "1", "300")
	cmd.Env = h.env
	out, err := cmd.Output()
	if ctx.Err() != nil {
		t.Fatalf("decide.sh did not return: it waited by sleeping (state %q)", h.state())
	}
	if err != nil {
		t.Fatal(err)
	}
	verdict, rest, _ := strings.Cut(string(out), "\n")
	if st := ParseState([]byte(rest)); verdict != "decided" || st.Phase != "committed" {
		t.Errorf("decide printed %q, want decided and committed", out)
	}
	if err := h.exit(); err != nil {
		t.Errorf("supervisor exit: %v", err)
	}
}

// status.sh following on the session is woken by the supervisor's line on
// DIR/wake when the state leaves "activating", not by a nap.
func TestStatusFollowWakesOnTheSupervisor(t *testing.T) {
	dash := needTool(t, "dash")
	dir, bin := t.TempDir(), t.TempDir()
	mkfifos(t, dir)
	blockingSleep(t, bin)
	os.WriteFile(filepath.Join(dir, "state"), []byte("activating\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "log"), []byte(""), 0o600)
	os.WriteFile(filepath.Join(dir, "pid"), []byte(fmt.Sprint(os.Getpid())), 0o600)
	// The "supervisor": holds the FIFO like supervisor.sh, changes the
	// state once status.sh waits (it has opened the FIFO), then signals.
	wake, err := os.OpenFile(filepath.Join(dir, "wake"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer wake.Close()
	go func() {
		time.Sleep(200 * time.Millisecond)
		setState(dir, "activated 0\n")
		wake.WriteString("s\n")
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd, vals := statusFollow(ctx, t, dash, dir, "1", "300")
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin"}
	if _, err := cmd.Output(); ctx.Err() != nil || err != nil {
		t.Fatalf("status.sh did not return on the supervisor's line (%v)", err)
	}
	b, _ := os.ReadFile(vals)
	if st := ParseState(b); st.Phase != "activated" {
		t.Errorf("state on descriptor 3: %q", b)
	}
}

// Reading the state of a live supervisor costs the host no process for
// its pid and state (the shell's read), only the log's size and tail. The
// commands run through wrappers on PATH that log their name.
func TestStatusReadsPidAndStateWithoutCommands(t *testing.T) {
	dash := needTool(t, "dash")
	dir := t.TempDir()
	bin, log := loggingBin(t, "cat", "wc", "tail", "head", "sleep", "sed", "tr")
	for name, s := range map[string]string{"pid": strconv.Itoa(os.Getpid()) + "\n", "state": "activating\n", "log": "line\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(dash, "-c", statusScript, "sh", dir, "1", "", "0")
	cmd.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH")}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if st := ParseState(out); st.Phase != "activating" || !st.Running || string(st.Output) != "line\n" {
		t.Errorf("status = %+v, want activating, running, its log", st)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Fields(string(b)), []string{"wc", "tail"}; !cmp.Equal(got, want) {
		t.Errorf("status.sh ran %q, want %q", got, want)
	}
}

// loggingBin is a directory for PATH with a wrapper for each of names that
// are installed: it appends its name to the file log, then runs the real
// command.
func loggingBin(t *testing.T, names ...string) (bin, log string) {
	t.Helper()
	bin, log = t.TempDir(), filepath.Join(t.TempDir(), "log")
	for _, name := range names {
		real, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		script := "#!/bin/sh\necho " + name + " >>" + log + "\nexec " + real + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return bin, log
}

// ran counts the commands that loggingBin's wrappers logged, by name.
func ran(t *testing.T, log string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, name := range strings.Fields(string(b)) {
		n[name]++
	}
	return n
}

// Following a long activation costs the host few processes: the ticker
// naps a fifth of a second, then naps that double up to a second, and the
// wait counts the tenths each nap slept (a follow of 3 s, the ticker of a
// fifth, ran sleep and wc 16 times each).
func TestStatusFollowNapsLessAsTheActivationGoesOn(t *testing.T) {
	dash := needTool(t, "dash")
	dir := t.TempDir()
	mkfifos(t, dir)
	for name, s := range map[string]string{"pid": strconv.Itoa(os.Getpid()) + "\n", "state": "activating\n", "log": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bin, log := loggingBin(t, "sleep", "wc")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd, vals := statusFollow(ctx, t, dash, dir, "1", "30")
	cmd.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH")}
	if out, err := cmd.Output(); err != nil || ctx.Err() != nil {
		t.Fatalf("the follow did not end after its 3 s (%v): %q", err, out)
	}
	b, _ := os.ReadFile(vals)
	if st := ParseState(b); st.Phase != "activating" || !st.Running {
		t.Errorf("state on descriptor 3: %q", b)
	}
	// Naps of 0.2, 0.4, 0.8, 1 and 1 s make the 3 s.
	if n := ran(t, log); n["sleep"] > 6 || n["wc"] > 7 {
		t.Errorf("a follow of 3 s ran sleep %d times and wc %d times, want at most 6 and 7", n["sleep"], n["wc"])
	}
}

// activated.sh runs its command only once the activation has ended: while
// the state is empty or "activating" it exits 97 and says so.
func TestActivatedRunsTheCommandOnlyAfterTheActivation(t *testing.T) {
	dash := needTool(t, "dash")
	dir := t.TempDir()
	run := func() (string, string, int) {
		cmd := exec.Command(dash, "-c", activatedScript, "sh", dir, "echo", "ran")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}
	for _, state := range []string{"", "activating\n"} {
		if state != "" {
			os.WriteFile(filepath.Join(dir, "state"), []byte(state), 0o600)
		}
		if out, errOut, code := run(); out != "" || code != 97 || errOut != "skiff: too early\n" {
			t.Errorf("state %q: printed %q, %q, exit %d; want nothing run, exit 97", state, out, errOut, code)
		}
	}
	for _, state := range []string{"activated 0\n", "activated 4\n", "rolled-back 2 switch-to-configuration test exited with 2\n"} {
		os.WriteFile(filepath.Join(dir, "state"), []byte(state), 0o600)
		if out, _, code := run(); out != "ran\n" || code != 0 {
			t.Errorf("state %q: printed %q, exit %d; want the command run", state, out, code)
		}
	}
}
