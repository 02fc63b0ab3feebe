package remote

import (
	"bufio"
	"encoding/base64"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Skip("dash is not installed")
	}
	script := strings.ReplaceAll(lockFuncs+sessionScript, "/run/skiff", run)
	cmd := exec.Command(dash, "-c", script, "skiff-session")
	cmd.Env = append(append(os.Environ(), "TMPDIR="+t.TempDir()), env...)
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

func (a *agent) stop() {
	_ = a.in.Close()
	_ = a.cmd.Wait()
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
		tag, text, _ := strings.Cut(strings.TrimSuffix(l, "\n"), " ")
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
	a := startAgent(t, t.TempDir())
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
	run := t.TempDir()
	lock := func(a *agent, brk string) reply {
		t.Helper()
		return a.call("lock", "alice", "laptop", "42", "2026-01-01T00:00:00Z", brk, "")
	}
	a := startAgent(t, run)
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
	b := startAgent(t, run)
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
	c := startAgent(t, run)
	if r := lock(c, "0"); r.code != 0 || !strings.HasPrefix(r.vals[0], "skiff-lock: stale user=alice") {
		t.Fatalf("after the keeper ended: %+v", r)
	}
	c.call("release")
	if _, err := os.Stat(filepath.Join(run, "lock")); !os.IsNotExist(err) {
		t.Errorf("release left the lock: %v", err)
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
