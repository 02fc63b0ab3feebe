package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/fleet"
	"github.com/skiffdeploy/skiff/internal/history"
)

var sampleResults = []fleet.Result{
	{Host: "web1", Status: fleet.Deployed, Mode: fleet.Switch, OldPath: "/nix/store/aaaaaaaaaaaaaaaa-nixos-system-web1-1",
		NewPath: "/nix/store/bbbbbbbbbbbbbbbb-nixos-system-web1-2", OldGen: 1, NewGen: 2, Duration: 4200 * time.Millisecond,
		Phases: map[fleet.Phase]time.Duration{fleet.PhaseCopy: time.Second, fleet.PhaseActivate: 2 * time.Second}},
	{Host: "db1", Status: fleet.Failed, Mode: fleet.Switch, Duration: time.Second,
		Err: fault.New("db1", fault.Refused, "start sshd", "connection to root@db1 refused")},
	{Host: "web2", Status: fleet.Skipped, Mode: fleet.Switch, Note: "canary failed"},
	{Host: "web3", Status: fleet.Failed, Mode: fleet.Switch, Err: errors.New("web3: something odd")},
}

func TestHistoryRunMapsResults(t *testing.T) {
	start := time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)
	got := historyRun(start, start.Add(time.Minute), "deploy", flake.Ref{URL: "/src/infra", Dir: "/src/infra"}, "switch", sampleResults, 3)
	want := history.Run{Started: start, Finished: start.Add(time.Minute), Command: "deploy", Flake: "/src/infra", Mode: "switch", ExitCode: 3,
		Hosts: []history.Host{
			{Name: "web1", Result: "deployed", OldPath: sampleResults[0].OldPath, NewPath: sampleResults[0].NewPath, OldGen: 1, NewGen: 2,
				Duration: 4200 * time.Millisecond, Phases: map[string]time.Duration{"copy": time.Second, "activate": 2 * time.Second}},
			{Name: "db1", Result: "failed", Duration: time.Second, ErrorClass: "refused", Error: "connection to root@db1 refused"},
			{Name: "web2", Result: "skipped", Note: "canary failed"},
			{Name: "web3", Result: "failed", ErrorClass: "error", Error: "web3: something odd"},
		}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("historyRun (-want +got):\n%s", diff)
	}
}

func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// needGit skips a test without git (fails it under CI).
func needGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("git is missing")
		}
		t.Skip("git is missing")
	}
}

func TestFlakeRevision(t *testing.T) {
	needGit(t)
	ctx := context.Background()
	r := &command.Runner{}
	dir := t.TempDir()
	if rev, dirty := flakeRevision(ctx, r, dir); rev != "" || dirty {
		t.Errorf("a directory outside git: revision %q, dirty %v", rev, dirty)
	}
	git(t, dir, "init", "-q")
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("{ outputs = _: {}; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if rev, _ := flakeRevision(ctx, r, dir); rev != "" {
		t.Errorf("a repository without commits: revision %q", rev)
	}
	git(t, dir, "add", "flake.nix")
	git(t, dir, "commit", "-q", "-m", "one")
	rev, dirty := flakeRevision(ctx, r, dir)
	if len(rev) != 40 || dirty {
		t.Errorf("clean repository: revision %q, dirty %v", rev, dirty)
	}
	// Untracked files are not part of a git flake.
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, dirty := flakeRevision(ctx, r, dir); dirty {
		t.Error("an untracked file made the tree dirty")
	}
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("{ outputs = _: { x = 1; }; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if rev2, dirty := flakeRevision(ctx, r, dir); rev2 != rev || !dirty {
		t.Errorf("modified tracked file: revision %q (was %q), dirty %v", rev2, rev, dirty)
	}
}

// latestOf is the newest history entry of host in the database at path,
// as history --json prints it.
func latestOf(t *testing.T, path, host string) historyJSON {
	t.Helper()
	code, out, errs := run("--history", path, "history", host, "--json")
	if code != 0 {
		t.Fatalf("history: exit %d\n%s", code, errs)
	}
	var j historyJSON
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("history --json: %v\n%s", err, out)
	}
	return j
}

func TestRecordRunThenHistory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "history.db")
	var stderr bytes.Buffer
	g := &globals{stdout: &bytes.Buffer{}, stderr: &stderr, history: path}
	start := time.Now().Add(-time.Minute)
	if err := recordRun(g, start, "deploy", flake.Ref{URL: "github:example/infra"}, nil, "switch", sampleResults, 3); err != nil {
		t.Fatalf("recordRun: %v\n%s", err, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("recordRun printed %q", stderr.String())
	}

	j := latestOf(t, path, "web1")
	if j.Host != "web1" || j.Result != "deployed" || j.NewGeneration != 2 || j.OldGeneration != 1 || j.Who != whoAmI() ||
		j.Flake != "github:example/infra" || j.ExitCode != 3 || j.PhasesMS["activate"] != 2000 || j.Command != "deploy" {
		t.Errorf("history web1 --json: %+v", j)
	}

	code, out, errs := run("--history", path, "history")
	if code != 0 {
		t.Fatalf("history: exit %d\n%s", code, errs)
	}
	for _, want := range []string{"WHEN", "web1  ", "deployed", "1 -> 2", "bbbbbbbb-nixos-system-web1-2", "refused: connection to root@db1 refused",
		"canary failed", "4.2s"} {
		if !strings.Contains(out, want) {
			t.Errorf("history table lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n != 5 {
		t.Errorf("history table has %d lines, want a header and 4 rows:\n%s", n, out)
	}

	code, out, _ = run("--history", path, "history", "--deployed")
	if code != 0 || !strings.Contains(out, "web1") || strings.Contains(out, "db1") {
		t.Errorf("history --deployed: exit %d\n%s", code, out)
	}
}

func TestRecordRunFailureIsAWarning(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	g := &globals{stdout: &bytes.Buffer{}, stderr: &stderr, history: filepath.Join(blocker, "history.db")}
	if err := recordRun(g, time.Now(), "deploy", flake.Ref{URL: "x"}, nil, "switch", sampleResults, 0); err == nil {
		t.Fatal("recording under a regular file succeeded")
	}
	if !strings.HasPrefix(stderr.String(), "skiff: warning: ") {
		t.Errorf("stderr %q, want a warning", stderr.String())
	}
}

func TestHistoryEmptyAndUsage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.db")
	code, out, errs := run("--history", path, "history")
	if code != 0 || out != "" || !strings.Contains(errs, "no runs recorded") {
		t.Errorf("empty history: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("reading the history created it")
	}
	for _, args := range [][]string{
		{"history", "web1;id"},
		{"history", "--limit", "-1"},
		{"history", "a", "b"},
		{"status", "--timeout", "100ms"},
		{"status", "--", "web1;id"},
	} {
		code, _, errs := run(append([]string{"--history", path}, args...)...)
		if code != ExitUsage {
			t.Errorf("%q: exit %d, want 2\n%s", args, code, errs)
		}
	}
}

func TestHistoryPath(t *testing.T) {
	t.Setenv("SKIFF_HISTORY", "")
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "/home/alice")
	g := &globals{}
	check := func(want string) {
		t.Helper()
		got, err := g.historyPath()
		if err != nil || got != want {
			t.Errorf("historyPath = %q, %v; want %q", got, err, want)
		}
	}
	check("/home/alice/.local/state/skiff/history.db")
	t.Setenv("XDG_STATE_HOME", "relative/ignored")
	check("/home/alice/.local/state/skiff/history.db")
	t.Setenv("XDG_STATE_HOME", "/state")
	check("/state/skiff/history.db")
	t.Setenv("SKIFF_HISTORY", "/env/h.db")
	check("/env/h.db")
	g.history = "/flag/h.db"
	check("/flag/h.db")
}

func TestAgo(t *testing.T) {
	for d, want := range map[time.Duration]string{
		10 * time.Second: "just now", 5 * time.Minute: "5m ago", 3 * time.Hour: "3h ago", 72 * time.Hour: "3d ago",
	} {
		if got := ago(d); got != want {
			t.Errorf("ago(%v) = %q, want %q", d, got, want)
		}
	}
}

// The revision recorded is the flake's as the run started: an edit made
// while it ran does not make the deployed tree dirty in the history.
func TestRecordedRevisionIsTheStarts(t *testing.T) {
	needGit(t)
	dir := t.TempDir()
	git(t, dir, "init", "-q")
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("{ outputs = _: {}; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "add", "flake.nix")
	git(t, dir, "commit", "-q", "-m", "one")
	path := filepath.Join(t.TempDir(), "history.db")
	var stderr bytes.Buffer
	g := &globals{stdout: &bytes.Buffer{}, stderr: &stderr, history: path}
	ref := flake.Ref{URL: dir, Dir: dir}
	rev := startRevision(g, ref)
	<-rev.done // the run reads it while it evaluates
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("{ outputs = _: { x = 1; }; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := recordRun(g, time.Now(), "deploy", ref, rev, "switch", sampleResults, 0); err != nil {
		t.Fatalf("recordRun: %v\n%s", err, stderr.String())
	}
	j := latestOf(t, path, "web1")
	if len(j.Revision) != 40 || j.Dirty {
		t.Errorf("recorded revision %q, dirty %v: want the clean tree the run started with", j.Revision, j.Dirty)
	}
}
