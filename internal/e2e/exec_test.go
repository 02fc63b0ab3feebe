package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/skiffdeploy/skiff/internal/lab"
)

// execLine mirrors "skiff exec --json".
type execLine struct {
	Host     string `json:"host"`
	ExitCode *int   `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	Error    *struct {
		Class   string `json:"class"`
		Message string `json:"message"`
		Hint    string `json:"hint"`
	} `json:"error"`
}

func parseExec(t *testing.T, stdout string) map[string]execLine {
	t.Helper()
	out := map[string]execLine{}
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var e execLine
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("exec --json line %q: %v", l, err)
		}
		out[e.Host] = e
	}
	return out
}

// hostLines are the lines of out prefixed "HOST| ", without the prefix.
func hostLines(out, host string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, host+"| "); ok {
			lines = append(lines, rest)
		}
	}
	return lines
}

func TestExec(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "ex1"}, lab.HostSpec{Name: "ex2"}, lab.HostSpec{Name: "exdown"},
		lab.HostSpec{Name: "expw", SudoPassword: "hunter2"})
	dir := writeFlake(t, host("ex1", `deployment.tags = [ "ex" ];`)+host("ex2", `deployment.tags = [ "ex" ];`)+host("exdown", "")+host("expw", ""))
	if err := l.Host("exdown").StopSSHD(); err != nil {
		t.Fatal(err)
	}

	// Arguments arrive verbatim: quoted once, at the SSH boundary.
	args := []string{"a b", "$HOME", "x;y", "it's", `"q"`, "*", "`id`", "  ", "\\n"}
	r := skiffOn(t, l, "-x", "exec", "--on", "@ex", "--flake", dir, "--", "printf", `%s\n`)
	wantCode(t, r, 0)
	r = skiffOn(t, l, append([]string{"-x", "exec", "--on", "@ex", "--flake", dir, "--", "printf", `[%s]\n`}, args...)...)
	wantCode(t, r, 0)
	if n := traced(r.stderr, "ssh", "printf"); n != 2 {
		t.Errorf("exec ran %d ssh commands with printf, want one per host", n)
	}
	for _, h := range []string{"ex1", "ex2"} {
		got := hostLines(r.stdout, h)
		var want []string
		for _, a := range args {
			want = append(want, "["+a+"]")
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s printed %q, want %q", h, got, want)
		}
	}
	wantContains(t, "exit table", r.stderr, "HOST", "EXIT", "ERROR")
	if strings.Contains(r.stdout, "EXIT") {
		t.Errorf("the exit table is on stdout:\n%s", r.stdout)
	}

	// Standard error stays on stderr; a non-zero exit and an unreachable
	// host make exit 3.
	script := []string{"sh", "-c", `echo "out $1"; echo err >&2; exit 3`, "sh", "$HOME"}
	r = skiffOn(t, l, "exec", "ex1", "exdown", "--flake", dir, "--")
	wantCode(t, r, 2)
	r = skiffOn(t, l, append([]string{"exec", "ex1", "exdown", "--flake", dir, "--"}, script...)...)
	wantCode(t, r, 3)
	if got := hostLines(r.stdout, "ex1"); len(got) != 1 || !strings.HasPrefix(got[0], "out ") {
		t.Errorf("ex1's stdout lines: %q", got)
	}
	if got := hostLines(r.stderr, "ex1"); len(got) != 1 || got[0] != "err" {
		t.Errorf("ex1's stderr lines: %q", got)
	}
	if hostLines(r.stdout, "exdown") != nil {
		t.Errorf("exdown printed:\n%s", r.stdout)
	}
	var ex1Row, downRow string
	for _, line := range strings.Split(r.stderr, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[0] == "ex1" {
			ex1Row = line
		}
		if len(f) > 1 && f[0] == "exdown" {
			downRow = line
		}
	}
	if f := strings.Fields(ex1Row); len(f) < 3 || f[1] != "3" || f[2] != "-" {
		t.Errorf("ex1's row %q, want exit 3 and no error", ex1Row)
	}
	if f := strings.Fields(downRow); len(f) < 3 || f[1] != "-" || f[2] != "refused:" {
		t.Errorf("exdown's row %q, want no exit code and a refused connection", downRow)
	}
	wantContains(t, "errors", r.stderr, "skiff: error: exdown: connection to root@exdown refused", "skiff: hint: ")

	r = skiffOn(t, l, append([]string{"exec", "ex1", "exdown", "--json", "--flake", dir, "--"}, script...)...)
	wantCode(t, r, 3)
	res := parseExec(t, r.stdout)
	if e := res["ex1"]; e.ExitCode == nil || *e.ExitCode != 3 || e.Stdout != "out $HOME\n" || e.Stderr != "err\n" || e.Error != nil {
		t.Errorf("ex1: %+v", e)
	}
	if e := res["exdown"]; e.ExitCode != nil || e.Error == nil || e.Error.Class != "refused" || e.Error.Hint == "" {
		t.Errorf("exdown: %+v", e)
	}
	if len(res) != 2 {
		t.Errorf("exec --json has %d hosts, want 2", len(res))
	}

	// A command that exits 255 itself is not mistaken for ssh failing
	// (ssh's own exit code): it ran, and its output is untouched.
	r = skiffOn(t, l, "exec", "ex1", "--json", "--flake", dir, "--", "sh", "-c", "printf out; printf err >&2; exit 255")
	wantCode(t, r, 3)
	if e := parseExec(t, r.stdout)["ex1"]; e.ExitCode == nil || *e.ExitCode != 255 || e.Stdout != "out" || e.Stderr != "err" || e.Error != nil {
		t.Errorf("ex1 exiting 255: %+v", e)
	}

	// The login user, or root through sudo -n; a sudo that wants a
	// password is refused, never asked.
	r = skiffOn(t, l, "exec", "ex1", "--target-user", "deploy", "-p", "1", "--flake", dir, "--", "id", "-un")
	wantCode(t, r, 0)
	if got := hostLines(r.stdout, "ex1"); strings.Join(got, ",") != lab.DeployUser {
		t.Errorf("as the login user: %q", got)
	}
	r = skiffOn(t, l, "exec", "ex1", "expw", "--target-user", "deploy", "--sudo", "--json", "--flake", dir, "--", "id", "-un")
	wantCode(t, r, 3)
	res = parseExec(t, r.stdout)
	if e := res["ex1"]; e.ExitCode == nil || *e.ExitCode != 0 || e.Stdout != "root\n" {
		t.Errorf("ex1 with --sudo: %+v", e)
	}
	if e := res["expw"]; e.ExitCode != nil || e.Error == nil || e.Error.Class != "sudo" || !strings.Contains(e.Error.Hint, "password-less sudo") {
		t.Errorf("expw with --sudo (sudo wants a password): %+v", e)
	}
}
