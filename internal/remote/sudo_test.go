package remote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/transport"
)

const testPassword = "hunter2-'$x\\ y"

func TestPrivArgvNeverCarriesThePassword(t *testing.T) {
	deploy := &Host{Name: "web1", Password: testPassword, Conn: &transport.SSH{Target: transport.Target{Host: "web1", User: "deploy"}}}
	root := &Host{Name: "web1", Password: testPassword, Conn: &transport.SSH{Target: transport.Target{Host: "web1"}}}
	for _, tc := range []struct {
		name  string
		h     *Host
		argv  []string
		stdin string // "" means none
		want  []string
		input string // what the host reads on standard input
	}{
		{name: "root runs the command as is", h: root, argv: []string{"nix-env", "-p", Profile},
			want: []string{"nix-env", "-p", Profile}},
		{name: "no input", h: deploy, argv: []string{"sh", "-c", stateScript},
			want:  []string{"sh", "-c", sudoScript, "skiff-sudo", "none", "sh", "-c", stateScript},
			input: testPassword + "\n"},
		{name: "with input", h: deploy, argv: []string{"sh", "-c", missingScript}, stdin: "/nix/store/a\n",
			want:  []string{"sh", "-c", sudoScript, "skiff-sudo", "stdin", "sh", "-c", missingScript},
			input: testPassword + "\n/nix/store/a\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := transport.Exec{Argv: tc.h.priv(tc.argv...)}
			if tc.stdin != "" {
				e.Stdin = strings.NewReader(tc.stdin)
			}
			if argv, ok := privArgv(e.Argv); ok {
				e = withPassword(e, argv, tc.h.Password)
			}
			if d := cmp.Diff(tc.want, e.Argv); d != "" {
				t.Errorf("argv (-want +got):\n%s", d)
			}
			for _, a := range e.Argv {
				if strings.Contains(a, "hunter2") {
					t.Errorf("the password is in the argv: %q", a)
				}
			}
			var in []byte
			if e.Stdin != nil {
				in, _ = io.ReadAll(e.Stdin)
			}
			if string(in) != tc.input {
				t.Errorf("stdin %q, want %q", in, tc.input)
			}
		})
	}
}

// fakeSudo stands in for sudo -S with an empty prompt: like sudo it reads the
// password from standard input only when FAKE_SUDO is "ask" (or "refuse",
// which then fails as for a wrong password), and it runs the command with
// the same standard input.
const fakeSudo = `#!/bin/sh
if [ "$1 $2 $3 $4" != "-S -p  --" ]; then echo "fake sudo: unexpected arguments: $*" >&2; exit 99; fi
shift 4
case $FAKE_SUDO in
ask)
	IFS= read -r got
	[ "$got" = "$FAKE_PASSWORD" ] || { echo "Sorry, try again." >&2; exit 1; } ;;
refuse)
	IFS= read -r got
	echo "sudo: 1 incorrect password attempt" >&2
	exit 1 ;;
esac
exec "$@"
`

// TestSudoScript runs sudo.sh under the shells a host's /bin/sh may be,
// with a fake sudo that asks for the password, or does not (NOPASSWD or
// cached credentials): the command gets exactly its own input, never the
// password, and nothing is left behind.
func TestSudoScript(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "sudo"), []byte(fakeSudo), 0o755); err != nil {
		t.Fatal(err)
	}
	// The command prints what it read, then its arguments.
	cmd := []string{"sh", "-c", `cat; echo "args:$*"`, "sh", "a b", "c"}
	for _, shell := range []string{"dash", "bash"} {
		if _, err := exec.LookPath(shell); err != nil {
			t.Logf("%s: not installed", shell)
			continue
		}
		for _, tc := range []struct {
			sudo, input, stdin string
			wantOut            string
			wantCode           int
		}{
			{sudo: "ask", input: "stdin", stdin: "/nix/store/a\n/nix/store/b\n", wantOut: "/nix/store/a\n/nix/store/b\nargs:a b c\n"},
			{sudo: "nopasswd", input: "stdin", stdin: "/nix/store/a\n/nix/store/b\n", wantOut: "/nix/store/a\n/nix/store/b\nargs:a b c\n"},
			{sudo: "ask", input: "none", wantOut: "args:a b c\n"},
			{sudo: "nopasswd", input: "none", wantOut: "args:a b c\n"},
			{sudo: "ask", input: "stdin", stdin: "", wantOut: "args:a b c\n"},
			{sudo: "refuse", input: "stdin", stdin: "x\n", wantCode: 1},
			{sudo: "refuse", input: "none", wantCode: 1},
		} {
			t.Run(shell+"/"+tc.sudo+"/"+tc.input, func(t *testing.T) {
				tmp := t.TempDir()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				c := exec.CommandContext(ctx, shell, append([]string{"-c", sudoScript, "skiff-sudo", tc.input}, cmd...)...)
				c.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "TMPDIR=" + tmp, "FAKE_SUDO=" + tc.sudo, "FAKE_PASSWORD=" + testPassword}
				c.Stdin = strings.NewReader(testPassword + "\n" + tc.stdin)
				// A process of the script left holding its output would
				// hold Run for ever: fail instead.
				c.WaitDelay = 10 * time.Second
				var stdout, stderr bytes.Buffer
				c.Stdout, c.Stderr = &stdout, &stderr
				err := c.Run()
				code := 0
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				if code != tc.wantCode {
					t.Errorf("exit code %d, want %d; stderr %q", code, tc.wantCode, stderr.String())
				}
				if tc.wantCode == 0 && stdout.String() != tc.wantOut {
					t.Errorf("the command printed %q, want %q (stderr %q)", stdout.String(), tc.wantOut, stderr.String())
				}
				if strings.Contains(stdout.String()+stderr.String(), "hunter2") {
					t.Errorf("the password reached the output: %q %q", stdout.String(), stderr.String())
				}
				if left, _ := os.ReadDir(tmp); len(left) > 0 {
					t.Errorf("left behind in TMPDIR: %v", left)
				}
				if left := processesWith("TMPDIR=" + tmp); len(left) > 0 {
					t.Errorf("processes of the script outlive it: %v", left)
				}
			})
		}

		// A refused sudo with input to feed: the feeder, which waits for
		// a reader that never comes, is killed even when it does not
		// heed TERM. A feeder that the kill reaches before its subshell
		// has reset the TERM trap it inherited drops the TERM (a race
		// that left it waiting for ever, holding the script's output
		// open); here the script starts with TERM ignored, which its
		// feeder inherits, so that every round plays that instant.
		t.Run(shell+"/refused, the feeder deaf to TERM", func(t *testing.T) {
			for i := 0; i < 3; i++ {
				tmp := t.TempDir()
				c := exec.Command("sh", append([]string{"-c", `trap "" TERM; exec "$@"`, "sh", shell, "-c", sudoScript, "skiff-sudo", "stdin"}, cmd...)...)
				c.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "TMPDIR=" + tmp, "FAKE_SUDO=refuse", "FAKE_PASSWORD=" + testPassword}
				c.Stdin = strings.NewReader(testPassword + "\nx\n")
				c.WaitDelay = 10 * time.Second
				var out bytes.Buffer
				c.Stdout, c.Stderr = &out, &out
				err := c.Run()
				if left := processesWith("TMPDIR=" + tmp); len(left) > 0 {
					for _, p := range left {
						pid, _ := strconv.Atoi(strings.Fields(p)[0])
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
					t.Fatalf("round %d: processes of the script outlive it (%v): %v", i, err, left)
				}
				if errors.Is(err, exec.ErrWaitDelay) {
					t.Fatalf("round %d: a process of the script held its output open", i)
				}
			}
		})

		// A command that ends while its input stays open (the lock keeper
		// reads one line): the script ends too, without waiting for the
		// end of the input.
		t.Run(shell+"/input left open", func(t *testing.T) {
			tmp := t.TempDir()
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c := exec.CommandContext(ctx, shell, "-c", sudoScript, "skiff-sudo", "stdin", "sh", "-c", `read -r x; echo "got:$x"`)
			c.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "TMPDIR=" + tmp, "FAKE_SUDO=nopasswd"}
			c.Stdin = r
			if _, err := io.WriteString(w, testPassword+"\nrelease\n"); err != nil {
				t.Fatal(err)
			}
			out, err := c.Output()
			r.Close()
			if err != nil || string(out) != "got:release\n" {
				t.Errorf("output %q, err %v; want got:release", out, err)
			}
			if left, _ := os.ReadDir(tmp); len(left) > 0 {
				t.Errorf("left behind in TMPDIR: %v", left)
			}
		})
	}
}

func TestSudoScriptPassesShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Skip("shellcheck is not installed")
	}
	out, err := exec.Command("shellcheck", "-S", "warning", "-s", "sh", "sudo.sh").CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck sudo.sh: %v\n%s", err, out)
	}
}

// processesWith lists the processes whose environment holds kv (a test's
// own TMPDIR=DIR marks the processes of what it ran).
func processesWith(kv string) []string {
	var found []string
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, e := range bytes.Split(env, []byte{0}) {
			if string(e) == kv {
				cmd, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
				found = append(found, d.Name()+" "+string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
				break
			}
		}
	}
	return found
}
