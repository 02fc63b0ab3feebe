package history

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// writerEnv makes the test binary a history writer (see TestMain): it
// records writerRuns runs into the database named by the variable.
const writerEnv = "SKIFF_HISTORY_TEST_WRITER"

const writerRuns = 40

func TestMain(m *testing.M) {
	if path := os.Getenv(writerEnv); path != "" {
		if err := writer(path, os.Getenv(writerEnv+"_NAME"), true); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// writer opens the database itself (so that writers race to create it)
// and records runs, one transaction each. With barrier, it prints
// "ready" once the database is open and waits for a line on standard
// input before writing, so that the writers of a test overlap.
func writer(path, name string, barrier bool) error {
	ctx := context.Background()
	db, err := Open(ctx, path)
	if err != nil {
		return err
	}
	defer db.Close()
	if barrier {
		fmt.Println("ready")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return fmt.Errorf("%s: wait for go: %w", name, err)
		}
	}
	for i := range writerRuns {
		if _, err := db.Record(ctx, sampleRun(name, i)); err != nil {
			return fmt.Errorf("%s run %d: %w", name, i, err)
		}
	}
	return nil
}

var t0 = time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)

func sampleRun(who string, i int) Run {
	start := t0.Add(time.Duration(i) * time.Minute)
	return Run{
		Who: who, Started: start, Finished: start.Add(5 * time.Second), Command: "deploy",
		Flake: "/src/infra", Revision: "0123456789abcdef0123456789abcdef01234567", Dirty: i%2 == 1, Mode: "switch",
		Hosts: []Host{
			{Name: "web1", Result: Deployed, OldPath: "/nix/store/aaa-old", NewPath: fmt.Sprintf("/nix/store/bbb-%s-%d", who, i),
				OldGen: i, NewGen: i + 1, Duration: 4200 * time.Millisecond,
				Phases: map[string]time.Duration{"copy": 1500 * time.Millisecond, "activate": 2 * time.Second}},
			{Name: "db1", Result: Failed, ErrorClass: "refused", Error: "connection to root@db1 refused", Duration: time.Second},
		},
	}
}

func openTemp(t *testing.T) *DB {
	t.Helper()
	db, err := Open(t.Context(), filepath.Join(t.TempDir(), "state", "skiff", "history.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestRecordAndRead(t *testing.T) {
	ctx := t.Context()
	db := openTemp(t)
	want := sampleRun("alice@box", 3)
	id, err := db.Record(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	want.ID = id
	// Hosts come back ordered by name.
	want.Hosts[0], want.Hosts[1] = want.Hosts[1], want.Hosts[0]
	runs, err := db.Runs(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Run{want}, runs); diff != "" {
		t.Errorf("Runs (-want +got):\n%s", diff)
	}
	st, err := os.Stat(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("database mode %v, want 0600", st.Mode().Perm())
	}
}

func TestQueries(t *testing.T) {
	ctx := t.Context()
	db := openTemp(t)
	rec := func(r Run) int64 {
		t.Helper()
		id, err := db.Record(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	r1 := rec(Run{Who: "alice@a", Started: at(0), Finished: at(1), Command: "deploy", Mode: "switch", Hosts: []Host{
		{Name: "web1", Result: Deployed, NewPath: "/nix/store/w1", NewGen: 1},
		{Name: "web2", Result: Deployed, NewPath: "/nix/store/w2", NewGen: 1},
	}})
	r2 := rec(Run{Who: "bob@b", Started: at(10), Finished: at(11), Command: "deploy", Mode: "switch", ExitCode: 3, Hosts: []Host{
		{Name: "web1", Result: Failed, ErrorClass: "activation"},
		{Name: "db1", Result: Deployed, NewPath: "/nix/store/d1", NewGen: 7},
	}})
	r3 := rec(Run{Who: "carol@c", Started: at(20), Finished: at(21), Command: "deploy", Mode: "dry-activate", Hosts: []Host{
		{Name: "web2", Result: Deployed, NewPath: "/nix/store/w2-dry"},
	}})
	r4 := rec(Run{Who: "dave@d", Started: at(30), Finished: at(31), Command: "deploy", Mode: "switch", Hosts: []Host{
		{Name: "web1", Result: UpToDate, NewPath: "/nix/store/w1", NewGen: 1},
	}})

	ids := func(runs []Run) []int64 {
		var out []int64
		for _, r := range runs {
			out = append(out, r.ID)
		}
		return out
	}
	runs, err := db.Runs(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{r4, r3, r2, r1}, ids(runs)); diff != "" {
		t.Errorf("runs newest first (-want +got):\n%s", diff)
	}
	runs, err = db.Runs(ctx, Filter{Host: "web1", Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{r4, r2}, ids(runs)); diff != "" {
		t.Errorf("runs of web1, limit 2 (-want +got):\n%s", diff)
	}
	for _, r := range runs {
		if len(r.Hosts) != 1 || r.Hosts[0].Name != "web1" {
			t.Errorf("run %d of web1 has hosts %+v, want only web1", r.ID, r.Hosts)
		}
	}

	es, err := db.Entries(ctx, Filter{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, fmt.Sprintf("%d %s %s", e.Run.ID, e.Host.Name, e.Host.Result))
	}
	want := []string{
		fmt.Sprintf("%d web1 up to date", r4),
		fmt.Sprintf("%d web2 deployed", r3),
		fmt.Sprintf("%d db1 deployed", r2),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}

	dep, err := db.Deployed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, h := range []string{"db1", "web1", "web2"} {
		e := dep[h]
		got = append(got, fmt.Sprintf("%s %d %s %s", h, e.Run.ID, e.Run.Who, e.Host.NewPath))
	}
	want = []string{
		fmt.Sprintf("db1 %d bob@b /nix/store/d1", r2),
		fmt.Sprintf("web1 %d alice@a /nix/store/w1", r1), // a later failure and an up-to-date run do not count
		fmt.Sprintf("web2 %d alice@a /nix/store/w2", r1), // a dry activation changes nothing
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deployed (-want +got):\n%s", diff)
	}
	dep, err = db.Deployed(ctx, "web2", "nosuch")
	if err != nil {
		t.Fatal(err)
	}
	if len(dep) != 1 || dep["web2"].Run.ID != r1 {
		t.Errorf("deployed web2, nosuch: %+v", dep)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	db := openTemp(t)
	if _, err := db.db.Exec(fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err := Open(t.Context(), db.Path())
	if err == nil {
		t.Fatal("a database of a newer schema was opened")
	}
	t.Log(err)
}

func TestNotADatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("this is not an SQLite database\n"), 10), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(t.Context(), path)
	if err == nil {
		t.Fatal("a text file was opened as a history database")
	}
	t.Log(err)
}

// TestTwoProcessesWriteAtOnce starts two processes of this test binary
// that create the same new database at the same moment, wait until both
// have it open, then each record runs as fast as they can: every run of
// both must land, and SQLite's integrity check must pass.
func TestTwoProcessesWriteAtOnce(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "history.db")
	type proc struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		stdout *bufio.Reader
		stderr bytes.Buffer
	}
	procs := make([]*proc, 2)
	for i := range procs {
		p := &proc{cmd: exec.Command(exe, "-test.run=^$")}
		p.cmd.Env = append(os.Environ(), writerEnv+"="+path, writerEnv+"_NAME=writer"+strconv.Itoa(i))
		p.cmd.Stderr = &p.stderr
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		out, err := p.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		p.stdout = bufio.NewReader(out)
		procs[i] = p
	}
	for _, p := range procs {
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	}
	for i, p := range procs {
		if line, err := p.stdout.ReadString('\n'); line != "ready\n" {
			p.cmd.Wait()
			t.Fatalf("writer %d: %q, %v\n%s", i, line, err, p.stderr.String())
		}
	}
	for _, p := range procs {
		io.WriteString(p.stdin, "go\n")
	}
	for i, p := range procs {
		io.Copy(io.Discard, p.stdout)
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("writer %d: %v\n%s", i, err, p.stderr.String())
		}
	}

	ctx := context.Background()
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Check(ctx); err != nil {
		t.Fatal(err)
	}
	runs, err := db.Runs(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, r := range runs {
		if len(r.Hosts) != 2 {
			t.Errorf("run %d of %s has %d hosts, want 2", r.ID, r.Who, len(r.Hosts))
		}
		per[r.Who]++
	}
	want := map[string]int{"writer0": writerRuns, "writer1": writerRuns}
	if diff := cmp.Diff(want, per); diff != "" {
		t.Errorf("runs per writer (-want +got):\n%s", diff)
	}
	var mode string
	if err := db.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal mode %q (%v), want wal", mode, err)
	}
}

// TestTwoConnectionsInOneProcess covers writers that share a process but
// not a connection.
func TestTwoConnectionsInOneProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = writer(path, "g"+strconv.Itoa(i), false) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	db, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	es, err := db.Entries(t.Context(), Filter{Host: "web1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2*writerRuns {
		t.Errorf("%d web1 rows, want %d", len(es), 2*writerRuns)
	}
}
