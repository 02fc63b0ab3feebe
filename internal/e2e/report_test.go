package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/lab"
	"github.com/skiffdeploy/skiff/internal/ui"
)

// What a deploy reports when it is interrupted, or when a host's disk fills
// up before the commit: the plain lines, the summary table's row and the
// JSON summary.

// runAt runs skiff as a process against the hosts of l and calls at once
// when a line of its standard error or output (for --json) contains
// marker. It returns the exit code and both outputs; the test fails when
// marker never shows.
func runAt(t *testing.T, l sshConfigured, marker string, at func(p *skiffProc), args ...string) result {
	t.Helper()
	cmd := exec.Command(skiffBinary(t), append([]string{"-F", l.SSHConfig(), "--nix-option", "substituters="}, args...)...)
	cmd.Env = append(cmd.Environ(), "SKIFF_HISTORY="+filepath.Join(t.TempDir(), "history.db"))
	// skiff leads a process group, as a shell's foreground job does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	seen := false
	scan := func(r io.Reader, out *strings.Builder) {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), marker) {
				once.Do(func() { seen = true; at(&skiffProc{cmd}) })
			}
		}
	}
	var outText, errText strings.Builder
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); scan(stdout, &outText) }()
	go func() { defer wg.Done(); scan(stderr, &errText) }()
	wg.Wait()
	once.Do(func() {})
	if !seen {
		cmd.Process.Kill()
	}
	err = cmd.Wait()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	}
	r := result{code, outText.String(), errText.String()}
	t.Logf("skiff %s\nexit %d\n--- stdout\n%s--- stderr\n%s", strings.Join(args, " "), code, r.stdout, r.stderr)
	if !seen {
		t.Fatalf("never saw %q", marker)
	}
	return r
}

// skiffProc is the skiff process runAt runs.
type skiffProc struct{ cmd *exec.Cmd }

func (p *skiffProc) interrupt() { p.cmd.Process.Signal(syscall.SIGINT) }

// interruptGroup is a Ctrl-C typed on a terminal: SIGINT to skiff's whole
// process group, with every child skiff left in it.
func (p *skiffProc) interruptGroup() { syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT) }

func interruptOn(t *testing.T, l sshConfigured, marker string, args ...string) result {
	t.Helper()
	return runAt(t, l, marker, (*skiffProc).interrupt, args...)
}

// summaryRow is the summary table's row of host, its columns split on
// runs of two or more spaces.
func summaryRow(t *testing.T, stdout, host string) []string {
	t.Helper()
	for _, line := range strings.Split(stdout, "\n") {
		cols := splitColumns(line)
		if len(cols) > 0 && cols[0] == host {
			return cols
		}
	}
	t.Fatalf("no summary row for %s:\n%s", host, stdout)
	return nil
}

func splitColumns(line string) []string {
	var cols []string
	for _, c := range strings.Split(strings.TrimSpace(line), "  ") {
		if c = strings.TrimSpace(c); c != "" {
			cols = append(cols, c)
		}
	}
	return cols
}

// wantSummaryRow checks a summary row: HOST RESULT GENERATION COPIED DURATION
// [ERROR]; an empty want skips the column.
func wantSummaryRow(t *testing.T, row []string, result, gens, copied, errcol string) {
	t.Helper()
	get := func(i int) string {
		if i < len(row) {
			return row[i]
		}
		return ""
	}
	if get(1) != result || (gens != "" && get(2) != gens) || get(3) != copied || (errcol != "" && !strings.HasPrefix(get(5), errcol)) {
		t.Errorf("summary row %q, want result %q, generations %q, copied %q, error %q", row, result, gens, copied, errcol)
	}
}

// jsonHost is host's entry of a --json run's summary.
func jsonHost(t *testing.T, stdout, host string) (ui.SummaryJSON, ui.HostJSON) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	var s ui.SummaryJSON
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil || s.Type != "summary" {
		t.Fatalf("last line is no summary (%v):\n%s", err, stdout)
	}
	for _, h := range s.Hosts {
		if h.Host == host {
			return s, h
		}
	}
	t.Fatalf("no %s in the summary:\n%s", host, stdout)
	return s, ui.HostJSON{}
}

// slowHost is a host whose system takes a minute to build: its toplevel
// depends on a derivation that sleeps (new for each call, so never built
// already).
func slowHost(name string, generation int) string {
	nonce := time.Now().UnixNano()
	return fmt.Sprintf(`      %s = let
        s = lib.mkSystem { name = %q; generation = %d; };
        tl = s.config.system.build.toplevel;
        slow = derivation { name = "slow-build-%d"; system = tl.system; builder = "/bin/sh"; args = [ "-c" "sleep 60; echo > $out" ]; };
      in s // { config = s.config // { system.build.toplevel = derivation (tl.drvAttrs // { inherit slow; }); }; };
`, name, name, generation, nonce)
}

func TestInterruptDuringBuildSaysNothingChanged(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "ib1"})
	wantCode(t, skiffOn(t, l, "deploy", "ib1", "--flake", writeFlake(t, host("ib1", "generation = 1;"))), 0)
	slow := writeFlake(t, slowHost("ib1", 2))

	r := interruptOn(t, l, "skiff: build: building", "deploy", "ib1", "--flake", slow)
	wantCode(t, r, 130)
	wantContains(t, "output", r.stderr,
		"ib1: done: interrupted: interrupted during the build; nothing on the host changed",
		"skiff: error: ib1: interrupted during the build; nothing on the host changed")
	for _, wrong := range []string{"failed to build", "nix log"} {
		if strings.Contains(r.stderr, wrong) {
			t.Errorf("an interrupted build is reported as a failed one (%q)", wrong)
		}
	}
	// The interrupt may come before the host was connected to: its
	// generation may be unknown.
	wantSummaryRow(t, summaryRow(t, r.stdout, "ib1"), "interrupted", "", "-", "interrupted")

	r = interruptOn(t, l, "building 1 system", "deploy", "ib1", "--json", "--flake", slow)
	wantCode(t, r, 130)
	s, h := jsonHost(t, r.stdout, "ib1")
	if s.ExitCode != 130 || h.Result != "interrupted" || h.ErrorClass != "interrupted" || h.CopiedPaths != 0 ||
		!strings.Contains(h.Error, "interrupted during the build; nothing on the host changed") || h.NewGeneration != 0 {
		t.Errorf("summary %+v, host %+v", s, h)
	}
	if got := profileOf(t, l, "ib1"); got != "system-1-link" {
		t.Errorf("profile %q, want system-1-link", got)
	}
}

func TestInterruptDuringCopyCountsNothingCopied(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "ic1"})
	wantCode(t, skiffOn(t, l, "deploy", "ic1", "--flake", writeFlake(t, host("ic1", "generation = 1;"))), 0)

	// 256 MiB to copy: the interrupt lands while the copy runs.
	r := interruptOn(t, l, "ic1: copy: copying", "deploy", "ic1", "--flake",
		writeFlake(t, host("ic1", "generation = 2; baseSize = 268435456;")))
	wantCode(t, r, 130)
	wantContains(t, "output", r.stderr,
		"ic1: done: interrupted: interrupted during the copy; nothing was activated; the host still runs generation 1; paths copied so far stay in its store until a garbage collection")
	for _, wrong := range []string{"copy to root@ic1 failed", "run the copy by hand", "ic1: activate:"} {
		if strings.Contains(r.stderr, wrong) {
			t.Errorf("output has %q", wrong)
		}
	}
	wantSummaryRow(t, summaryRow(t, r.stdout, "ic1"), "interrupted", "1", "-", "interrupted")

	r = interruptOn(t, l, "path(s), 256.0 MiB", "deploy", "ic1", "--json", "--flake",
		writeFlake(t, host("ic1", "generation = 3; baseSize = 268435456;")))
	wantCode(t, r, 130)
	s, h := jsonHost(t, r.stdout, "ic1")
	if s.ExitCode != 130 || h.Result != "interrupted" || h.ErrorClass != "interrupted" || h.CopiedPaths != 0 || h.CopiedBytes != 0 ||
		!strings.Contains(h.Error, "interrupted during the copy") || h.OldGeneration != 1 || h.NewGeneration != 0 {
		t.Errorf("summary %+v, host %+v", s, h)
	}
	if got := profileOf(t, l, "ic1"); got != "system-1-link" {
		t.Errorf("profile %q, want system-1-link", got)
	}
}

func TestInterruptDuringActivationSaysWhatItWaitsFor(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "ia1"})
	wantCode(t, skiffOn(t, l, "deploy", "ia1", "--flake", writeFlake(t, host("ia1", "generation = 1;"))), 0)

	r := interruptOn(t, l, "ia1: activate: switch-to-configuration test under a supervisor", "deploy", "ia1", "--flake",
		writeFlake(t, host("ia1", "generation = 2; activationDelay = 3;")))
	wantCode(t, r, 130)
	announce := "ia1: activate: interrupted: the activation has started and finishes anyway"
	wantContains(t, "output", r.stderr, announce,
		"skiff waits for switch-to-configuration test to end on the host, then checks the host and confirms over a new ssh connection (at most 30s after the activation ends; unconfirmed, the host returns to generation 1",
		"ia1: done: deployed: interrupted during activation, which was let finish")
	// Said when the interrupt came: before the activation (3 s) ended.
	if a, c := strings.Index(r.stderr, announce), strings.Index(r.stderr, "ia1: activate: confirming"); a < 0 || c < 0 || a > c {
		t.Errorf("the interrupt was not announced before the activation ended")
	}
	wantSummaryRow(t, summaryRow(t, r.stdout, "ia1"), "deployed", "1 -> 2", "2 paths, 5.4KiB", "interrupted during activation")

	r = interruptOn(t, l, "switch-to-configuration test under a supervisor", "deploy", "ia1", "--json", "--flake",
		writeFlake(t, host("ia1", "generation = 3; activationDelay = 3;")))
	wantCode(t, r, 130)
	s, h := jsonHost(t, r.stdout, "ia1")
	if s.ExitCode != 130 || h.Result != "deployed" || h.NewGeneration != 3 || h.ErrorClass != "" ||
		h.Note != "interrupted during activation, which was let finish" || h.CopiedPaths == 0 {
		t.Errorf("summary %+v, host %+v", s, h)
	}
	if !strings.Contains(r.stdout, `"message":"interrupted: the activation has started and finishes anyway`) {
		t.Errorf("no interrupt event in the JSON stream:\n%s", r.stdout)
	}
	if got := profileOf(t, l, "ia1"); got != "system-3-link" {
		t.Errorf("profile %q, want system-3-link", got)
	}
}

// A Ctrl-C typed on the terminal goes to skiff's whole process group: the
// ssh connections that follow the activation must not die with it.
func TestTerminalInterruptDuringActivationLetsItFinish(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "it1"})
	wantCode(t, skiffOn(t, l, "deploy", "it1", "--flake", writeFlake(t, host("it1", "generation = 1;"))), 0)
	// Sent while a status read waits on the host for the slow activation.
	r := runAt(t, l, "it1| activating the configuration", func(p *skiffProc) {
		time.Sleep(500 * time.Millisecond)
		p.interruptGroup()
	},
		"deploy", "it1", "--flake", writeFlake(t, host("it1", "generation = 2; activationDelay = 3;")))
	wantCode(t, r, 130)
	wantContains(t, "output", r.stderr, "it1: done: deployed: interrupted during activation, which was let finish")
	if got := profileOf(t, l, "it1"); got != "system-2-link" {
		t.Errorf("profile %q, want system-2-link", got)
	}
}

// A disk that fills up between the copy and the commit: the host's small
// /nix is filled while a slow activation runs (before it, the store query
// itself would fail), so setting the system profile fails at the commit.
func TestDiskFullBeforeCommitSaysOutOfDiskSpace(t *testing.T) {
	const h = "id1"
	l := newLab(t, lab.HostSpec{Name: h, StoreSize: 64 << 20})
	wantCode(t, skiffOn(t, l, "deploy", h, "--flake", writeFlake(t, host(h, "generation = 1;"))), 0)
	fill := func(*skiffProc) {
		out, _ := l.Host(h).Exec(t.Context(), "sh", "-c", "dd if=/dev/zero of=/nix/var/fill bs=1M 2>&1; df -k /nix")
		if !strings.Contains(out, "No space left on device") {
			t.Errorf("filling /nix:\n%s", out)
		}
	}
	unfill := func() {
		if out, err := l.Host(h).Exec(t.Context(), "rm", "-f", "/nix/var/fill"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	const marker = "switch-to-configuration test under a supervisor"

	r := runAt(t, l, marker, fill, "deploy", h, "--flake", writeFlake(t, host(h, "generation = 2; activationDelay = 2;")))
	wantCode(t, r, 4)
	wantContains(t, "output", r.stderr,
		"id1: done: rolled back: out of disk space: setting the system profile failed (",
		"); rolled back to generation 1",
		`skiff: hint: free space on the host: run "skiff gc id1 --keep 5 --flake `, "to delete old generations and collect garbage, or deploy with --gc")
	wantSummaryRow(t, summaryRow(t, r.stdout, h), "rolled back", "1", "2 paths, 5.4KiB", "disk")

	unfill()
	r = runAt(t, l, marker, fill, "deploy", h, "--json", "--flake", writeFlake(t, host(h, "generation = 3; activationDelay = 2;")))
	wantCode(t, r, 4)
	s, hj := jsonHost(t, r.stdout, h)
	if s.ExitCode != 4 || hj.Result != "rolled back" || hj.ErrorClass != "disk" || !strings.Contains(hj.Error, "out of disk space") ||
		!strings.Contains(hj.Hint, "skiff gc id1 --keep 5") || hj.NewGeneration != 0 {
		t.Errorf("summary %+v, host %+v", s, hj)
	}
	if got := profileOf(t, l, h); got != "system-1-link" {
		t.Errorf("profile %q, want system-1-link", got)
	}

	// Full before the deploy: Nix cannot even read the store.
	r = skiffOn(t, l, "deploy", h, "--flake", writeFlake(t, host(h, "generation = 4;")))
	wantCode(t, r, 3)
	wantContains(t, "output", r.stderr,
		"id1: done: failed: out of disk space: reading the host's store failed (",
		"); nothing on the host changed",
		`skiff: hint: free space on the host: run "skiff gc id1 --keep 5 --flake `)
	wantSummaryRow(t, summaryRow(t, r.stdout, h), "failed", "1", "-", "disk")

	// A copy the disk preflight refuses copied nothing: 96 MiB do not fit.
	unfill()
	r = skiffOn(t, l, "deploy", h, "--json", "--flake", writeFlake(t, host(h, "generation = 4; baseSize = 100663296;")))
	wantCode(t, r, 3)
	_, hj = jsonHost(t, r.stdout, h)
	if hj.ErrorClass != "disk" || !strings.Contains(hj.Error, "nothing was copied") || hj.CopiedPaths != 0 || hj.CopiedBytes != 0 {
		t.Errorf("refused copy: host %+v", hj)
	}
	r = skiffOn(t, l, "deploy", h, "--flake", writeFlake(t, host(h, "generation = 4; baseSize = 100663296;")))
	wantSummaryRow(t, summaryRow(t, r.stdout, h), "failed", "1", "-", "disk")
}
