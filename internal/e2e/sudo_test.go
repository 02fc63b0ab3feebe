package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/lab"
)

// TestSudoPasswordReachesOnlySudo deploys, in one run, to a host whose
// sudo needs no password (NOPASSWD), one whose sudo asks for it, and one
// whose sudo asks but holds cached credentials (so that it does not read
// the password): every host deploys (store query, lock, copy, supervised
// activation, health checks, rollback), and the password appears nowhere:
// skiff's output, the JSON, the -x trace, the history database, the
// process list while it runs, the hosts' files.
func TestSudoPasswordReachesOnlySudo(t *testing.T) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	pw := "hunter2-" + hex.EncodeToString(b[:])
	trusted := "trusted-users = root deploy" // the copy runs as deploy where sudo asks
	l := newLab(t,
		lab.HostSpec{Name: "nopw"},
		lab.HostSpec{Name: "askpw", SudoPassword: pw, ExtraNixConf: trusted},
		lab.HostSpec{Name: "cached", SudoPassword: pw, ExtraNixConf: trusted})
	hosts := []string{"nopw", "askpw", "cached"}

	// "cached": one sudo ticket for all of deploy's sessions, taken now.
	if _, err := l.Host("cached").Exec(t.Context(), "sh", "-c", `echo "Defaults timestamp_type=global" >>/etc/sudoers`); err != nil {
		t.Fatal(err)
	}
	if _, err := sshAsDeploy(t, l, "cached", pw+"\n", "sudo -S -p '' -v"); err != nil {
		t.Fatalf("take a sudo ticket on cached: %v", err)
	}
	if _, err := sshAsDeploy(t, l, "cached", "", "sudo -n true"); err != nil {
		t.Fatalf("cached has no sudo ticket: %v", err)
	}
	if _, err := sshAsDeploy(t, l, "askpw", "", "sudo -n true"); err == nil {
		t.Fatal("sudo on askpw does not ask for a password")
	}

	history := filepath.Join(t.TempDir(), "history.db")
	ps := watchProcesses(t, pw)
	flakes := map[int]string{} // by generation
	deploy := func(gen int, extra map[string]string) result {
		t.Helper()
		if flakes[gen] == "" {
			var configs strings.Builder
			for _, h := range hosts {
				configs.WriteString(host(h, fmt.Sprintf("generation = %d; %s", gen, extra[h])))
			}
			flakes[gen] = writeFlake(t, configs.String())
		}
		r := skiffWithInput(t, l, pw+"\n", "-x", "deploy", "--ask-sudo-password", "--target-user", "deploy",
			"--json", "--history", history, confirm, "--flake", flakes[gen])
		if strings.Contains(r.stdout+r.stderr, pw) {
			t.Errorf("generation %d: the password appears in skiff's output or trace", gen)
		}
		return r
	}
	check := `deployment.healthChecks = { commands = [ "test -e /run/current-system/nixos-version" ]; timeout = 2; };`

	// The first deploy (a plain switch: the hosts run no system yet), then a
	// supervised one with health checks.
	for gen := 1; gen <= 2; gen++ {
		r := deploy(gen, map[string]string{"nopw": check, "askpw": check, "cached": check})
		wantCode(t, r, 0)
		_, sum := parseJSON(t, r.stdout)
		for _, h := range hosts {
			if got := results(sum)[h]; got != "deployed" {
				t.Errorf("generation %d: %s %s, want deployed", gen, h, got)
			}
			if got := profileOf(t, l, h); got != fmt.Sprintf("system-%d-link", gen) {
				t.Errorf("generation %d: %s has profile %q", gen, h, got)
			}
		}
		// The password goes only where sudo asks for it; -x shows how.
		for _, h := range hosts {
			sent := strings.Contains(traceOf(r.stderr, "deploy@"+h), "skiff-sudo")
			if want := h != "nopw"; sent != want {
				t.Errorf("generation %d: %s got the password through skiff-sudo: %v, want %v", gen, h, sent, want)
			}
		}
	}

	// The same flake again: each host's probe reads its links alone, as
	// deploy through sudo (through skiff-sudo where sudo asks), and finds
	// it up to date.
	r := deploy(2, nil)
	wantCode(t, r, 0)
	_, sum := parseJSON(t, r.stdout)
	for _, h := range hosts {
		if got := results(sum)[h]; got != "up to date" {
			t.Errorf("the same flake again: %s %s, want up to date", h, got)
		}
		if links := linksRead(r.stderr, "deploy@"+h); links == "" {
			t.Errorf("%s: the probe of an expected no-op did not read the links alone", h)
		} else if sent := strings.Contains(links, "skiff-sudo"); sent != (h != "nopw") {
			t.Errorf("%s: the links read went through skiff-sudo: %v, want %v", h, sent, h != "nopw")
		}
	}

	// A failing check rolls the hosts whose sudo asks back, through sudo.
	fails := `deployment.healthChecks = { commands = [ "test -e /run/no-such-file" ]; timeout = 1; };`
	r = deploy(3, map[string]string{"askpw": fails, "cached": fails})
	wantCode(t, r, 4)
	_, sum = parseJSON(t, r.stdout)
	if res := results(sum); res["nopw"] != "deployed" || res["askpw"] != "rolled back" || res["cached"] != "rolled back" {
		t.Errorf("results %v: want nopw deployed, askpw and cached rolled back", res)
	}
	for _, h := range []string{"askpw", "cached"} {
		if got := profileOf(t, l, h); got != "system-2-link" {
			t.Errorf("%s: profile %q after the rollback, want system-2-link", h, got)
		}
	}

	if seen := ps(); len(seen) > 0 {
		t.Errorf("the password appeared in the process list:\n%s", strings.Join(seen, "\n"))
	}
	for _, f := range filesContaining(t, filepath.Dir(history), pw) {
		t.Errorf("the password is in the history: %s", f)
	}
	for _, h := range hosts {
		for _, f := range filesContaining(t, l.Host(h).Dir, pw) {
			t.Errorf("the password is in %s's files: %s", h, f)
		}
		// The host's private /run (the supervisors' and the lock's files).
		out, err := l.Host(h).ExecInput(t.Context(), strings.NewReader(pw+"\n"), "grep", "-rlF", "-D", "skip", "-f", "-", "/run")
		if out != "" {
			t.Errorf("the password is in %s's /run: %s", h, out)
		}
		var ee *lab.ExecError
		if err != nil && (!errors.As(err, &ee) || ee.ExitCode != 1) {
			t.Errorf("grep %s's /run: %v", h, err)
		}
	}
	if left, _ := filepath.Glob("/tmp/skiff-sudo.*"); len(left) > 0 {
		t.Errorf("skiff-sudo left its FIFO directories behind: %v", left)
	}
}

// sshAsDeploy runs the remote command line as deploy on a lab host, with stdin.
func sshAsDeploy(t *testing.T, l *lab.Lab, host, stdin, command string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "ssh", "-F", l.SSHConfig(), "-o", "BatchMode=yes", "deploy@"+host, "--", command)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, stderr.String())
	}
	return string(out), nil
}

// traceOf is the -x trace of the ssh commands to dest (a traced command
// spans several lines when its arguments do).
func traceOf(stderr, dest string) string {
	var cmds []string
	for _, c := range strings.Split("\n"+stderr, "\n+ ")[1:] {
		if strings.HasPrefix(c, "ssh ") && strings.Contains(c, " "+dest+" ") {
			cmds = append(cmds, c)
		}
	}
	return strings.Join(cmds, "\n")
}

// watchProcesses samples every process's command line ("ps -eww -o args")
// every 50ms until the returned function is called, which returns the
// lines that contained secret.
func watchProcesses(t *testing.T, secret string) func() []string {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var seen []string
	samples := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			out, err := exec.Command("ps", "-eww", "-o", "args").Output()
			if err == nil {
				mu.Lock()
				samples++
				for _, l := range strings.Split(string(out), "\n") {
					if strings.Contains(l, secret) {
						seen = append(seen, l)
					}
				}
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	stop := func() []string {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		if samples == 0 {
			t.Error("ps never ran")
		}
		return seen
	}
	t.Cleanup(func() { stop() })
	return stop
}

// filesContaining walks dir and lists the regular files that contain
// secret, skipping the Nix store's contents.
func filesContaining(t *testing.T, dir, secret string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasSuffix(p, "/nix/store") {
			return fs.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte(secret)) {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		t.Errorf("walk %s: %v", dir, err)
	}
	return found
}
