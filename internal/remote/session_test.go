package remote

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// agent is session.sh running under dash, its lock in a directory of the
// test instead of /run/skiff.
type agent struct {
	t   *testing.T
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startAgent(t *testing.T, run string, env ...string) *agent {
	t.Helper()
	return startAgentIn(t, "dash", run, env...)
}

// startAgentIn runs the agent under shell (dash; bash is the sh of NixOS).
func startAgentIn(t *testing.T, shell, run string, env ...string) *agent {
	t.Helper()
	return startAgentWith(t, shell, run, "", env...)
}

// startAgentWith runs the agent with first as the requests in its command
// (none when empty).
func startAgentWith(t *testing.T, shell, run, first string, env ...string) *agent {
	t.Helper()
	sh, err := exec.LookPath(shell)
	if err != nil {
		t.Skip(shell + " is not installed")
	}
	script := strings.ReplaceAll(sessionScript, "/run/skiff", run)
	cmd := exec.Command(sh, "-c", script, "skiff-session")
	if first != "" {
		cmd.Args = append(cmd.Args, first)
	}
	cmd.Env = append(append(os.Environ(), "TMPDIR="+t.TempDir()), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agent{t: t, cmd: cmd, in: in, out: bufio.NewReader(outp)}
	t.Cleanup(a.stop)
	if got := a.read(nil); got.code != 0 {
		t.Fatalf("hello: %+v", got)
	}
	return a
}

// stop ends the agent by closing its input. An agent that does not end
// within a minute is killed with what it started, and the test fails:
// a hang shows as this test's failure, not the package's timeout.
func (a *agent) stop() {
	_ = a.in.Close()
	done := make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		<-done
		a.t.Errorf("the agent did not end within a minute of the end of its input")
	}
}

// read reads one reply, passing "b" bytes to stream as well.
func (a *agent) read(stream *[]string) reply {
	a.t.Helper()
	var r reply
	for {
		l, err := a.out.ReadString('\n')
		if err != nil {
			a.t.Fatalf("agent ended: %v", err)
		}
		tag, text := frame(strings.TrimSuffix(l, "\n"))
		switch tag {
		case "b":
			b, err := base64.StdEncoding.DecodeString(text)
			if err != nil {
				a.t.Fatalf("bad frame %q", l)
			}
			r.out = append(r.out, b...)
			if stream != nil {
				*stream = append(*stream, string(b))
			}
		case "o":
			r.vals = append(r.vals, text)
		case "e":
			r.errs = append(r.errs, text)
		case "=":
			r.code, _ = strconv.Atoi(text)
			return r
		default:
			a.t.Fatalf("unframed line %q", l)
		}
	}
}

func (a *agent) call(verb string, args ...string) reply {
	a.t.Helper()
	if _, err := io.WriteString(a.in, request(verb, args...)); err != nil {
		a.t.Fatal(err)
	}
	return a.read(nil)
}

func TestSessionAgentRunsRequestsFramed(t *testing.T) {
	for _, shell := range []string{"dash", "bash"} {
		t.Run(shell, func(t *testing.T) { testSessionAgentRunsRequestsFramed(t, shell) })
	}
}

func testSessionAgentRunsRequestsFramed(t *testing.T, shell string) {
	a := startAgentIn(t, shell, t.TempDir())
	tests := []struct {
		name string
		verb string
		args []string
		want reply
	}{
		{"output, values, errors and code kept apart", "run",
			[]string{"sh", "-c", `printf 'out\n= 9\n'; echo value >&3; echo oops >&2; exit 4`},
			reply{out: []byte("out\n= 9\n"), vals: []string{"value"}, errs: []string{"oops"}, code: 4}},
		{"arguments with spaces, quotes and newlines arrive whole", "run",
			[]string{"printf", "[%s]", "a b", "it's", "x\ny", "$HOME", ""},
			reply{out: []byte("[a b][it's][x\ny][$HOME][]")}},
		{"output without a final newline", "run", []string{"printf", "%s", "no newline"},
			reply{out: []byte("no newline")}},
		{"arguments with newlines at either end, empty lines and frame-like text", "run",
			[]string{"printf", "[%s]", "\n", "a\n", "\nb", "a\n\n\nb\n\n", "+x\n:y\n~z", "~YQ==", "cr\r\nlf\r"},
			reply{out: []byte("[\n][a\n][\nb][a\n\n\nb\n\n][+x\n:y\n~z][~YQ==][cr\r\nlf\r]")}},
		{"binary output over several base64 lines, with frame-like lines", "run",
			[]string{"sh", "-c", `printf '\000\001\377= 0\no x\ne y\nb eHg=\nAAAA\n'; i=0; while [ $i -lt 40 ]; do printf 'abc'; i=$((i+1)); done`},
			reply{out: []byte("\x00\x01\xff= 0\no x\ne y\nb eHg=\nAAAA\n" + strings.Repeat("abc", 40))}},
		{"a builtin's name runs in a subshell, not in the agent", "run",
			[]string{"exit", "7"}, reply{code: 7}},
		{"the agent's functions are not in reach of a command's effects", "run",
			[]string{"set", "--", "x"}, reply{}},
		{"stream merges standard error into the output", "stream",
			[]string{"sh", "-c", "echo one; echo two >&2; exit 2"},
			reply{out: []byte("one\ntwo\n"), code: 2}},
		{"no input: /dev/null", "run", []string{"cat"}, reply{}},
		{"unknown verb", "frobnicate", nil, reply{errs: []string{"unknown request frobnicate"}, code: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := a.call(tc.verb, tc.args...)
			if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(reply{})); d != "" {
				t.Error(d)
			}
		})
	}
}

func TestSessionAgentGivesInputToTheNextCommandOnly(t *testing.T) {
	a := startAgent(t, t.TempDir())
	secret := "line one\nsecret two\n"
	if r := a.call("stdin", base64.StdEncoding.EncodeToString([]byte(secret))); r.code != 0 {
		t.Fatalf("stdin: %+v", r)
	}
	if r := a.call("run", "cat"); string(r.out) != secret {
		t.Errorf("cat got %q", r.out)
	}
	if r := a.call("run", "cat"); len(r.out) != 0 {
		t.Errorf("the next command got input too: %q", r.out)
	}
}

func TestSessionAgentStreamsAsItComes(t *testing.T) {
	a := startAgent(t, t.TempDir())
	if _, err := io.WriteString(a.in, request("stream", "sh", "-c", "echo first; sleep 0.5; echo second")); err != nil {
		t.Fatal(err)
	}
	var chunks []string
	r := a.read(&chunks)
	if string(r.out) != "first\nsecond\n" || len(chunks) < 2 {
		t.Errorf("output %q in chunks %q; want two chunks", r.out, chunks)
	}
}

// The end of a streamed command wakes the agent (a FIFO), which does not
// nap to notice it: here every sleep on the host would take 20 s.
func TestSessionAgentNoticesTheEndOfAStreamAtOnce(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "sleep"), []byte("#!/bin/sh\nexec /bin/sleep 20\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, t.TempDir(), "PATH="+bin+":"+os.Getenv("PATH"))
	for i := range 3 {
		if _, err := io.WriteString(a.in, request("stream", "sh", "-c", "echo one; echo two")); err != nil {
			t.Fatal(err)
		}
		got := make(chan reply, 1)
		go func() { got <- a.read(nil) }()
		select {
		case r := <-got:
			if string(r.out) != "one\ntwo\n" || r.code != 0 {
				t.Errorf("stream %d: %+v", i, r)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("stream %d: the agent did not notice the end of the command (it naps)", i)
		}
	}
}

func TestSessionAgentKeepsTheDeployLock(t *testing.T) {
	for _, shell := range []string{"dash", "bash"} {
		t.Run(shell, func(t *testing.T) { testSessionAgentKeepsTheDeployLock(t, shell) })
	}
}

func testSessionAgentKeepsTheDeployLock(t *testing.T, shell string) {
	run := t.TempDir()
	lock := func(a *agent, brk string) reply {
		t.Helper()
		return a.call("lock", "alice", "laptop", "42", "2026-01-01T00:00:00Z", brk, "")
	}
	a := startAgentIn(t, shell, run)
	if r := lock(a, "0"); r.code != 0 || !cmp.Equal(r.vals, []string{"skiff-lock: locked"}) {
		t.Fatalf("first lock: %+v", r)
	}
	owner, err := os.ReadFile(filepath.Join(run, "lock", "owner"))
	if err != nil || !strings.Contains(string(owner), "user=alice\nmachine=laptop\npid=42\n") {
		t.Fatalf("owner file %q, %v", owner, err)
	}
	// The same session asking again still holds it.
	if r := lock(a, "0"); r.code != 0 {
		t.Fatalf("lock again: %+v", r)
	}
	b := startAgentIn(t, shell, run)
	if r := lock(b, "0"); r.code != 3 || len(r.vals) != 1 || !strings.HasPrefix(r.vals[0], "skiff-lock: held user=alice machine=laptop pid=42") {
		t.Fatalf("second session: %+v", r)
	}
	if r := lock(b, "1"); r.code != 0 || !strings.HasPrefix(r.vals[0], "skiff-lock: broken user=alice") {
		t.Fatalf("--break-lock: %+v", r)
	}
	// a no longer keeps it: its release leaves b's lock.
	a.call("release")
	if _, err := os.Stat(filepath.Join(run, "lock")); err != nil {
		t.Fatalf("a released b's lock: %v", err)
	}
	// b ends without releasing: its lock is stale for the next.
	b.stop()
	c := startAgentIn(t, shell, run)
	if r := lock(c, "0"); r.code != 0 || !strings.HasPrefix(r.vals[0], "skiff-lock: stale user=alice") {
		t.Fatalf("after the keeper ended: %+v", r)
	}
	c.call("release")
	if _, err := os.Stat(filepath.Join(run, "lock")); !os.IsNotExist(err) {
		t.Errorf("release left the lock: %v", err)
	}
}

// lockRace runs skiff_lock for alice under shell, with a lock owned by
// owner in a directory of the test and with override (shell functions
// standing in for lock.sh's, to play a race) defined after lock.sh's. It
// returns the directory, skiff_lock's output and its error.
func lockRace(t *testing.T, shell, owner, override string) (string, string, error) {
	t.Helper()
	sh, err := exec.LookPath(shell)
	if err != nil {
		t.Skip(shell + " is not installed")
	}
	run := t.TempDir()
	if err := os.MkdirAll(filepath.Join(run, "lock"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "lock", "owner"), []byte(owner), 0o600); err != nil {
		t.Fatal(err)
	}
	script := strings.ReplaceAll(lockFuncs, "/run/skiff", run) + override + `
skiff_lock alice laptop 42 2026-01-01T00:00:00Z 0 ""`
	out, err := exec.Command(sh, "-c", script).CombinedOutput()
	return run, strings.TrimSpace(string(out)), err
}

// A lock released between a failed attempt and the read of its owner (a
// skiff gc that ends just then) is taken, not reported held by nobody:
// the owner is read once, and a lock with none to read is tried again.
// Here the read itself releases the lock first, every time.
func TestLockReleasedWhileReadIsTaken(t *testing.T) {
	for _, shell := range []string{"dash", "bash"} {
		t.Run(shell, func(t *testing.T) {
			live := fmt.Sprintf("user=gc\nmachine=m\npid=1\nsince=s\nkeeper=%d\nop=gc\n", os.Getpid())
			run, out, err := lockRace(t, shell, live, `skiff_lockowner() { rm -rf "$skiff_lockfile"; }`)
			if err != nil || out != "skiff-lock: locked" {
				t.Fatalf("skiff_lock: %v, %q; want it locked", err, out)
			}
			got, err := os.ReadFile(filepath.Join(run, "lock", "owner"))
			if err != nil || !strings.Contains(string(got), "user=alice\n") {
				t.Errorf("owner %q, %v", got, err)
			}
		})
	}
}

// A stale lock that another skiff takes over between this one's read and
// its own takeover stays the other's: this one moves aside what it read
// as stale, finds a live lock there instead, puts it back and says it is
// held. (Here the first read lets the other take over.) Before, the
// other's fresh lock was removed and both held the host.
func TestStaleLockTakenMeanwhileIsLeftToItsTaker(t *testing.T) {
	for _, shell := range []string{"dash", "bash"} {
		t.Run(shell, func(t *testing.T) {
			gone := exec.Command("true")
			if err := gone.Run(); err != nil {
				t.Fatal(err)
			}
			stale := fmt.Sprintf("user=old\nmachine=m\npid=1\nsince=s\nkeeper=%d\n", gone.Process.Pid)
			fresh := fmt.Sprintf("user=other\nmachine=m\npid=2\nsince=s\nkeeper=%d\n", os.Getpid())
			other := `skiff_lockowner() {
	tr '\n' ' ' 2>/dev/null <"$skiff_lockfile/owner"
	[ -e "$skiff_lockdir/read" ] && return
	: >"$skiff_lockdir/read"
	rm -rf "$skiff_lockfile" && mkdir "$skiff_lockdir/.other" && printf '` + strings.ReplaceAll(fresh, "\n", `\n`) + `' >"$skiff_lockdir/.other/owner" && mv -T "$skiff_lockdir/.other" "$skiff_lockfile"
}`
			run, out, err := lockRace(t, shell, stale, other)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 3 || !strings.HasPrefix(out, "skiff-lock: held user=other") {
				t.Fatalf("skiff_lock: %v, %q; want it held by the other", err, out)
			}
			if got, err := os.ReadFile(filepath.Join(run, "lock", "owner")); err != nil || string(got) != fresh {
				t.Errorf("the lock's owner %q, %v; want the other's", got, err)
			}
		})
	}
}

// A release removes only this shell's lock: one broken and taken by
// another skiff since this one last read it stays. (Here skiff_keeps
// answers from a read made before the other took it.) Before, the
// release removed the other's lock.
func TestReleaseLeavesALockTakenMeanwhile(t *testing.T) {
	for _, shell := range []string{"dash", "bash"} {
		t.Run(shell, func(t *testing.T) {
			other := fmt.Sprintf("user=other\nmachine=m\npid=2\nsince=s\nkeeper=%d\n", os.Getpid())
			run, out, err := lockRace(t, shell, other, `skiff_keeps() { return 0; }
skiff_unlock
exit`)
			if err != nil || out != "" {
				t.Fatalf("skiff_unlock: %v, %q", err, out)
			}
			if got, err := os.ReadFile(filepath.Join(run, "lock", "owner")); err != nil || string(got) != other {
				t.Errorf("the lock's owner %q, %v; want the other's still", got, err)
			}
			if gone, _ := filepath.Glob(filepath.Join(run, ".gone.*")); len(gone) != 0 {
				t.Errorf("the release left %v", gone)
			}
		})
	}
}

// What a shell killed between a rename and its rm left beside the lock
// is removed by the lock's next keeper once that shell has ended; what a
// live one has there (a skiff in the middle of its takeover or release)
// is left to it.
func TestLockSweepsWhatKilledShellsLeft(t *testing.T) {
	for _, shell := range []string{"dash", "bash"} {
		t.Run(shell, func(t *testing.T) {
			gone := exec.Command("true")
			if err := gone.Run(); err != nil {
				t.Fatal(err)
			}
			dead, live := gone.Process.Pid, os.Getpid()
			owner := fmt.Sprintf("user=old\nmachine=m\npid=1\nsince=s\nkeeper=%d\n", dead)
			var left []string
			for _, kind := range []string{".lock", ".old", ".gone"} {
				for _, pid := range []int{dead, live} {
					left = append(left, fmt.Sprintf("%s.%d", kind, pid))
				}
			}
			left = append(left, ".old.x")
			run, out, err := lockRace(t, shell, owner, `for d in `+strings.Join(left, " ")+`; do mkdir "$skiff_lockdir/$d"; done`)
			if err != nil || out != "skiff-lock: stale user=old machine=m pid=1 since=s keeper="+fmt.Sprint(dead)+" \nskiff-lock: locked" {
				t.Fatalf("skiff_lock: %v, %q", err, out)
			}
			var got []string
			entries, err := os.ReadDir(run)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				got = append(got, e.Name())
			}
			want := []string{fmt.Sprintf(".gone.%d", live), fmt.Sprintf(".lock.%d", live), fmt.Sprintf(".old.%d", live), ".old.x", "lock"}
			sort.Strings(want)
			if !cmp.Equal(got, want) {
				t.Errorf("left beside the lock: %q, want %q", got, want)
			}
		})
	}
}

func TestSessionScriptsPassShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Skip("shellcheck is not installed")
	}
	out, err := exec.Command("shellcheck", "-S", "warning", "-s", "sh", "session.sh", "lock.sh").CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// Requests written at once, before any reply is read (the lock, the state
// and the store query of a deploy), are answered in order, each with its
// own reply: a refused lock does not stop the requests after it, whose
// replies the deployer then discards.
func TestSessionAgentAnswersPipelinedRequestsInOrder(t *testing.T) {
	run := t.TempDir()
	lockArgs := []string{"alice", "laptop", "42", "2026-01-01T00:00:00Z", "0", ""}
	tests := []struct {
		name     string
		holder   bool // another session holds the lock
		wantCode int
	}{
		{"lock taken", false, 0},
		{"lock held by another", true, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.holder {
				h := startAgent(t, run)
				if r := h.call("lock", lockArgs...); r.code != 0 {
					t.Fatalf("holder: %+v", r)
				}
				defer h.call("release")
			}
			a := startAgent(t, run)
			all := request("lock", lockArgs...) +
				request("run", "sh", "-c", "echo state") +
				request("stdin", base64.StdEncoding.EncodeToString([]byte("/nix/store/a\n"))) +
				request("run", "cat")
			if _, err := io.WriteString(a.in, all); err != nil {
				t.Fatal(err)
			}
			if r := a.read(nil); r.code != tc.wantCode {
				t.Fatalf("lock: %+v, want exit %d", r, tc.wantCode)
			}
			if r := a.read(nil); r.code != 0 || string(r.out) != "state\n" {
				t.Errorf("state: %+v", r)
			}
			if r := a.read(nil); r.code != 0 {
				t.Errorf("stdin: %+v", r)
			}
			if r := a.read(nil); r.code != 0 || string(r.out) != "/nix/store/a\n" {
				t.Errorf("query: %+v", r)
			}
			a.call("release")
		})
	}
}

// The requests in the agent's command are answered first, in order, as if
// they had come on its input (input travels there as "input"), then those
// of its input; the file they were read from is gone.
func TestSessionAgentAnswersTheRequestsInItsCommandFirst(t *testing.T) {
	for _, shell := range []string{"dash", "bash"} {
		t.Run(shell, func(t *testing.T) {
			run, tmp := t.TempDir(), t.TempDir()
			first := request("lock", "alice", "laptop", "42", "2026-01-01T00:00:00Z", "0", "") +
				request("run", "printf", "%s\n", "two\nlines") +
				request("input", base64.StdEncoding.EncodeToString([]byte("/nix/store/a\n"))) +
				request("run", "cat")
			a := startAgentWith(t, shell, run, first, "TMPDIR="+tmp)
			if _, err := io.WriteString(a.in, request("run", "echo", "from input")); err != nil {
				t.Fatal(err)
			}
			if r := a.read(nil); r.code != 0 || !strings.Contains(strings.Join(r.vals, "\n"), "locked") {
				t.Errorf("lock: %+v", r)
			}
			if r := a.read(nil); r.code != 0 || string(r.out) != "two\nlines\n" {
				t.Errorf("run: %+v", r)
			}
			if r := a.read(nil); r.code != 0 {
				t.Errorf("input: %+v", r)
			}
			if r := a.read(nil); r.code != 0 || string(r.out) != "/nix/store/a\n" {
				t.Errorf("run with the input: %+v", r)
			}
			if r := a.read(nil); r.code != 0 || string(r.out) != "from input\n" {
				t.Errorf("the request on standard input: %+v", r)
			}
			if left, _ := filepath.Glob(filepath.Join(tmp, "skiff-session.*", "first")); len(left) > 0 {
				t.Errorf("the first requests' file is left: %v", left)
			}
			a.call("release")
		})
	}
}

func TestSessionRequestFraming(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no arguments", nil, "run 0\n"},
		{"one line each", []string{"sh", "-c", "a b"}, "run 3\n:sh\n:-c\n:a b\n"},
		{"an empty argument", []string{""}, "run 1\n:\n"},
		{"newlines continue the argument", []string{"x\ny", "z"}, "run 3\n:x\n+y\n:z\n"},
		{"newlines at the ends", []string{"\n", "a\n"}, "run 4\n:\n+\n:a\n+\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := request("run", tc.args...); got != tc.want {
				t.Errorf("request = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSessionReadsFramedReplies(t *testing.T) {
	bin := []byte("\x00\x01\xff= 0\no x\n")
	tests := []struct {
		name  string
		lines string
		want  reply
	}{
		{"bare base64 lines are output", base64.StdEncoding.EncodeToString(bin[:6]) + "\n" +
			base64.StdEncoding.EncodeToString(bin[6:]) + "\no v\ne w\n= 3\n",
			reply{out: bin, vals: []string{"v"}, errs: []string{"w"}, code: 3}},
		{"b lines are output", "b " + base64.StdEncoding.EncodeToString(bin) + "\n= 0\n", reply{out: bin}},
		{"empty values and errors", "o \ne \n= 0\n", reply{vals: []string{""}, errs: []string{""}}},
		{"an empty line adds nothing", "\n= 1\n", reply{code: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Session{}
			s.frame.s = s
			p := &pending{ch: make(chan reply, 1)}
			s.queue = []*pending{p}
			// Written a byte at a time: a line may come in pieces.
			for i := range len(tc.lines) {
				_, _ = s.frame.Write([]byte{tc.lines[i]})
			}
			select {
			case got := <-p.ch:
				if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(reply{}), cmpopts.EquateEmpty()); d != "" {
					t.Error(d)
				}
			default:
				t.Fatal("no end of reply")
			}
		})
	}
}

// A plain request costs the host two processes besides the agent: the
// command and, when it wrote something, the base64 of its output; the
// lock, the creation of its directory and the move that takes it. The
// agent's own external commands run through wrappers on PATH that log
// their name.
func TestSessionAgentForksLittlePerRequest(t *testing.T) {
	for _, shell := range []string{"dash", "bash"} {
		t.Run(shell, func(t *testing.T) {
			bin, log := loggingBin(t, "base64", "sed", "cat", "rm", "mv", "tr", "wc", "tail", "head",
				"sleep", "mkdir", "grep", "mktemp", "mkfifo", "printf", "echo", "test", "[")
			for name, body := range map[string]string{"hello": "printf 'hi %s\\n' \"$@\"", "quiet": ":"} {
				script := "#!/bin/sh\necho " + name + " >>" + log + "\n" + body + "\n"
				if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			a := startAgentIn(t, shell, t.TempDir(), "PATH="+bin+":"+os.Getenv("PATH"))
			lock := []string{"alice", "laptop", "42", "2026-01-01T00:00:00Z", "0", ""}
			tests := []struct {
				name string
				verb string
				args []string
				out  string
				want []string
			}{
				{"a command with output", "run", []string{"hello", "world"}, "hi world\n", []string{"hello", "base64"}},
				{"an argument with newlines", "run", []string{"hello", "a\nb"}, "hi a\nb\n", []string{"hello", "base64"}},
				{"a command without output", "run", []string{"quiet"}, "", []string{"quiet"}},
				{"the lock, its directory there", "lock", lock, "", []string{"mkdir", "mv"}},
				{"the lock again", "lock", lock, "", nil},
				{"its release, moved aside in one rename", "release", nil, "", []string{"mv", "rm"}},
			}
			for _, tc := range tests {
				if err := os.WriteFile(log, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				r := a.call(tc.verb, tc.args...)
				if string(r.out) != tc.out || r.code != 0 {
					t.Errorf("%s: %+v", tc.name, r)
				}
				b, err := os.ReadFile(log)
				if err != nil {
					t.Fatal(err)
				}
				if got := strings.Fields(string(b)); !cmp.Equal(got, tc.want, cmpopts.EquateEmpty()) {
					t.Errorf("%s: the agent ran %q, want %q", tc.name, got, tc.want)
				}
			}
			// A streamed command: its output passed on (wc, tail, head,
			// base64, and a nap or two), and its files are its own, so
			// nothing is removed or moved before it, nor its exit code
			// read by a command after it.
			for i := range 2 {
				if err := os.WriteFile(log, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				r := a.call("stream", "hello", "stream")
				if string(r.out) != "hi stream\n" || r.code != 0 {
					t.Errorf("stream %d: %+v", i, r)
				}
				b, err := os.ReadFile(log)
				if err != nil {
					t.Fatal(err)
				}
				for _, name := range strings.Fields(string(b)) {
					if name == "rm" || name == "mv" || name == "cat" {
						t.Errorf("stream %d: the agent ran %s (%q)", i, name, strings.Fields(string(b)))
					}
				}
			}
			if r := a.call("stream", "sh", "-c", "exit 3"); r.code != 3 {
				t.Errorf("a streamed command's exit code: %+v", r)
			}
		})
	}
}

// skiff_ticker's naps double from FIRST tenths up to LAST, each line
// saying how long it slept; where sleep takes whole seconds only, every
// nap is a second. The fake sleep logs its argument and returns at once.
func TestTickerNapsDoubleUpToASecond(t *testing.T) {
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Skip("no dash")
	}
	log := filepath.Join(t.TempDir(), "naps")
	for _, tc := range []struct {
		name, sleep string
		first, last string
		lines, naps string
	}{
		{"fractions", `echo "$1" >>` + log, "1", "10", "t 1,t 2,t 4,t 8,t 10,t 10", "0.1 0.2 0.4 0.8 1 1"},
		{"from a fifth", `echo "$1" >>` + log, "2", "10", "t 2,t 4,t 8,t 10,t 10,t 10", "0.2 0.4 0.8 1 1 1"},
		{"constant", `echo "$1" >>` + log, "1", "1", "t 1,t 1,t 1,t 1,t 1,t 1", "0.1 0.1 0.1 0.1 0.1 0.1"},
		{"whole seconds only", `echo "$1" >>` + log + `; case $1 in *.*) exit 1 ;; esac`, "1", "10", "t 10,t 10,t 10,t 10,t 10,t 10", "0.1 1 1 1 1 1 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(log)
			bin := fakeBin(t, map[string]string{"sleep": tc.sleep})
			cmd := exec.Command(dash, "-c", TickerFuncs+`skiff_ticker "$@" | head -n 6`, "sh", tc.first, tc.last)
			cmd.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH")}
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", ",")), " "); got != tc.lines {
				t.Errorf("lines %q, want %q", got, tc.lines)
			}
			b, _ := os.ReadFile(log)
			// The ticker may nap once more before head's end stops it.
			if got := strings.Join(strings.Fields(string(b)), " "); !strings.HasPrefix(got, tc.naps) {
				t.Errorf("naps %q, want %q first", got, tc.naps)
			}
		})
	}
}

// A streamed command that runs for seconds costs the agent few processes:
// its ticker naps a tenth of a second at first, then naps that double up
// to a second (the ticker of a tenth ran sleep and wc about 30 times each
// in 3 s).
func TestSessionAgentFollowsALongCommandWithFewNaps(t *testing.T) {
	bin, log := loggingBin(t, "sleep", "wc", "tr")
	realSleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, t.TempDir(), "PATH="+bin+":"+os.Getenv("PATH"))
	if _, err := io.WriteString(a.in, request("stream", "sh", "-c", "echo first; "+realSleep+" 3; echo second")); err != nil {
		t.Fatal(err)
	}
	var chunks []string
	if r := a.read(&chunks); string(r.out) != "first\nsecond\n" || r.code != 0 || len(chunks) < 2 {
		t.Fatalf("reply %+v in chunks %q", r, chunks)
	}
	b, _ := os.ReadFile(log)
	n := map[string]int{}
	for _, name := range strings.Fields(string(b)) {
		n[name]++
	}
	// Naps of 0.1, 0.2, 0.4, 0.8, 1 and 1 s make the 3 s.
	if n["sleep"] > 7 || n["wc"] > 8 || n["tr"] > 0 {
		t.Errorf("a streamed command of 3 s ran sleep %d times, wc %d times and tr %d times; want at most 7, 8 and 0", n["sleep"], n["wc"], n["tr"])
	}
}

// A command's child that outlives it and still writes (an activation
// that starts something in the background) writes to that request's
// output only: the next reply carries its own command's output.
func TestSessionAgentKeepsALeftoverWriterOutOfTheNextReply(t *testing.T) {
	a := startAgent(t, t.TempDir())
	if r := a.call("stream", "sh", "-c", "(sleep 0.3; echo a late line, longer than the next) & echo now"); string(r.out) != "now\n" || r.code != 0 {
		t.Fatalf("stream: %+v", r)
	}
	if r := a.call("run", "sh", "-c", "sleep 0.8; echo next"); string(r.out) != "next\n" || r.code != 0 {
		t.Errorf("the next request's reply %q (exit %d), want its own output only", r.out, r.code)
	}
}
