package history

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" database/sql driver, pure Go
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/skiffdeploy/skiff/internal/fault"
)

// The results a host can have in a run, as skiff reports them.
const (
	Deployed   = "deployed"
	UpToDate   = "up to date"
	Failed     = "failed"
	Skipped    = "skipped"
	RolledBack = "rolled back"
	// Interrupted: the run was stopped (Ctrl-C) before the host's deploy
	// could finish.
	Interrupted = "interrupted"
)

// BusyTimeout is how long a writer waits for another process's write to
// finish before giving up.
const BusyTimeout = 10 * time.Second

// Run is one skiff command that touched hosts.
type Run struct {
	ID       int64
	Who      string // user@machine
	Started  time.Time
	Finished time.Time
	Command  string // deploy, rollback
	Flake    string // the flake reference
	Revision string // commit of a local git flake; "" when unknown
	Dirty    bool   // the flake's work tree had uncommitted changes
	Mode     string // switch, boot, test, dry-activate
	ExitCode int
	Hosts    []Host
}

// Host is one host's part of a run.
type Host struct {
	Name       string
	Result     string // Deployed, UpToDate, Failed, Skipped, RolledBack
	OldPath    string // system running before the run
	NewPath    string // system the run deployed (or meant to)
	OldGen     int    // 0 when none
	NewGen     int    // 0 when none was made
	Duration   time.Duration
	Phases     map[string]time.Duration // time spent in each phase
	ErrorClass string
	Error      string
	Note       string // why a host was skipped
}

// Entry is one host of one run: a row of "skiff history". Run.Hosts is
// empty; the host is Host.
type Entry struct {
	Run  Run
	Host Host
}

// Filter narrows a query.
type Filter struct {
	Host  string // only this host; "" for all
	Limit int    // at most this many; 0 means no limit
}

// DB is an open history database.
type DB struct {
	db   *sql.DB
	path string
}

// migrations build the schema; migrations[i] takes user_version i to i+1.
// Released steps are never changed, only appended to.
var migrations = []string{
	`CREATE TABLE runs (
		id          INTEGER PRIMARY KEY AUTOINCREMENT,
		who         TEXT    NOT NULL,
		started_ms  INTEGER NOT NULL,
		finished_ms INTEGER NOT NULL,
		command     TEXT    NOT NULL,
		flake       TEXT    NOT NULL,
		revision    TEXT    NOT NULL DEFAULT '',
		dirty       INTEGER NOT NULL DEFAULT 0,
		mode        TEXT    NOT NULL DEFAULT '',
		exit_code   INTEGER NOT NULL
	);
	CREATE TABLE hosts (
		run_id         INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
		host           TEXT    NOT NULL,
		result         TEXT    NOT NULL,
		old_path       TEXT    NOT NULL DEFAULT '',
		new_path       TEXT    NOT NULL DEFAULT '',
		old_generation INTEGER NOT NULL DEFAULT 0,
		new_generation INTEGER NOT NULL DEFAULT 0,
		duration_ms    INTEGER NOT NULL DEFAULT 0,
		phases_ms      TEXT    NOT NULL DEFAULT '{}',
		error_class    TEXT    NOT NULL DEFAULT '',
		error          TEXT    NOT NULL DEFAULT '',
		note           TEXT    NOT NULL DEFAULT '',
		PRIMARY KEY (run_id, host)
	);
	CREATE INDEX hosts_by_host ON hosts (host, run_id);
	CREATE INDEX runs_by_start ON runs (started_ms);`,
}

// SchemaVersion is the schema this skiff writes.
var SchemaVersion = len(migrations)

// Open opens (creating it and its directory when missing) the history
// database at path and brings its schema up to date.
func Open(ctx context.Context, path string) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("history %s: %w", path, err)
	}
	// Create the file ourselves so that it (and SQLite's -wal and -shm
	// files, which copy its mode) is private to the user.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", path, err)
	}
	f.Close()
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", BusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate") // take the write lock at BEGIN: no deadlock on upgrade
	dsn := "file:" + (&url.URL{Path: abs}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	d := &DB{db: db, path: path}
	if err := retryBusy(ctx, func() error { return d.migrate(ctx) }); err != nil {
		db.Close()
		return nil, err
	}
	return d, nil
}

// retryBusy runs f again while it fails because another process holds
// the database in a way SQLite's busy timeout does not wait for (one
// process creating the database or switching it to WAL while another
// opens it), for at most BusyTimeout.
func retryBusy(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(BusyTimeout)
	for {
		err := f()
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(5+rand.IntN(20)) * time.Millisecond):
		}
	}
}

func isBusy(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	code := e.Code() & 0xff
	return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
}

// Path is the database's file.
func (d *DB) Path() string { return d.path }

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

func (d *DB) migrate(ctx context.Context) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return d.errorf(err, "open")
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return d.errorf(err, "read schema version")
	}
	if v > len(migrations) {
		return fault.New("", "", "use the newer skiff, or point --history at another file",
			"history %s has schema version %d; this skiff knows versions up to %d", d.path, v, len(migrations))
	}
	if v == len(migrations) {
		return nil
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return d.errorf(err, "upgrade schema to version %d", i+1)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return d.errorf(err, "set schema version")
	}
	if err := tx.Commit(); err != nil {
		return d.errorf(err, "upgrade schema")
	}
	return nil
}

func (d *DB) errorf(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	if strings.Contains(err.Error(), "not a database") || strings.Contains(err.Error(), "malformed") {
		return fault.Wrap(err, "", "", fmt.Sprintf("move %s aside; skiff starts a new history", d.path),
			"history %s: %s: the file is not a valid history database (%v)", d.path, what, err)
	}
	return fmt.Errorf("history %s: %s: %w", d.path, what, err)
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v) }

// Record writes a run and its hosts in one transaction and returns the
// run's id.
func (d *DB) Record(ctx context.Context, r Run) (int64, error) {
	var id int64
	err := retryBusy(ctx, func() error {
		var err error
		id, err = d.record(ctx, r)
		return err
	})
	return id, err
}

func (d *DB) record(ctx context.Context, r Run) (int64, error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, d.errorf(err, "record run")
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO runs (who, started_ms, finished_ms, command, flake, revision, dirty, mode, exit_code)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.Who, ms(r.Started), ms(r.Finished), r.Command, r.Flake, r.Revision, r.Dirty, r.Mode, r.ExitCode)
	if err != nil {
		return 0, d.errorf(err, "record run")
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, d.errorf(err, "record run")
	}
	for _, h := range r.Hosts {
		phases := map[string]int64{}
		for p, dur := range h.Phases {
			phases[p] = dur.Milliseconds()
		}
		pj, _ := json.Marshal(phases)
		_, err := tx.ExecContext(ctx, `INSERT INTO hosts (run_id, host, result, old_path, new_path, old_generation, new_generation,
			duration_ms, phases_ms, error_class, error, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			id, h.Name, h.Result, h.OldPath, h.NewPath, h.OldGen, h.NewGen, h.Duration.Milliseconds(), string(pj),
			h.ErrorClass, h.Error, h.Note)
		if err != nil {
			return 0, d.errorf(err, "record host %s", h.Name)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, d.errorf(err, "record run")
	}
	return id, nil
}

const runCols = `r.id, r.who, r.started_ms, r.finished_ms, r.command, r.flake, r.revision, r.dirty, r.mode, r.exit_code`

const hostCols = `h.host, h.result, h.old_path, h.new_path, h.old_generation, h.new_generation, h.duration_ms, h.phases_ms,
	h.error_class, h.error, h.note`

// newestFirst orders runs by start, the later-recorded first among equals.
const newestFirst = `ORDER BY r.started_ms DESC, r.id DESC`

type scanner interface{ Scan(...any) error }

func scanRun(s scanner, extra ...any) (Run, error) {
	var r Run
	var started, finished int64
	dest := append([]any{&r.ID, &r.Who, &started, &finished, &r.Command, &r.Flake, &r.Revision, &r.Dirty, &r.Mode, &r.ExitCode}, extra...)
	if err := s.Scan(dest...); err != nil {
		return r, err
	}
	r.Started, r.Finished = fromMS(started), fromMS(finished)
	return r, nil
}

// hostScan holds the scan targets of hostCols.
type hostScan struct {
	h        Host
	duration int64
	phases   string
}

func (hs *hostScan) dest() []any {
	return []any{&hs.h.Name, &hs.h.Result, &hs.h.OldPath, &hs.h.NewPath, &hs.h.OldGen, &hs.h.NewGen, &hs.duration, &hs.phases,
		&hs.h.ErrorClass, &hs.h.Error, &hs.h.Note}
}

func (hs *hostScan) host() Host {
	h := hs.h
	h.Duration = time.Duration(hs.duration) * time.Millisecond
	var p map[string]int64
	if json.Unmarshal([]byte(hs.phases), &p) == nil && len(p) > 0 {
		h.Phases = map[string]time.Duration{}
		for k, v := range p {
			h.Phases[k] = time.Duration(v) * time.Millisecond
		}
	}
	return h
}

func limitClause(n int) string {
	if n > 0 {
		return fmt.Sprintf(" LIMIT %d", n)
	}
	return ""
}

// Runs returns runs newest first, each with its hosts (with f.Host, only
// the runs that touched that host, and only that host of each). f.Limit
// counts runs.
func (d *DB) Runs(ctx context.Context, f Filter) ([]Run, error) {
	where, args := "", []any{}
	if f.Host != "" {
		where = "WHERE r.id IN (SELECT run_id FROM hosts WHERE host = ?)"
		args = append(args, f.Host)
	}
	rows, err := d.db.QueryContext(ctx, "SELECT "+runCols+" FROM runs r "+where+" "+newestFirst+limitClause(f.Limit), args...)
	if err != nil {
		return nil, d.errorf(err, "read runs")
	}
	var runs []Run
	index := map[int64]int{}
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			rows.Close()
			return nil, d.errorf(err, "read runs")
		}
		index[r.ID] = len(runs)
		runs = append(runs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, d.errorf(err, "read runs")
	}
	if len(runs) == 0 {
		return nil, nil
	}
	// The hosts of the runs read, in one query.
	q := "SELECT h.run_id, " + hostCols + " FROM hosts h WHERE h.run_id BETWEEN ? AND ?"
	lo, hi := runs[0].ID, runs[0].ID
	for _, r := range runs {
		lo, hi = min(lo, r.ID), max(hi, r.ID)
	}
	args = []any{lo, hi}
	if f.Host != "" {
		q += " AND h.host = ?"
		args = append(args, f.Host)
	}
	rows, err = d.db.QueryContext(ctx, q+" ORDER BY h.run_id, h.host", args...)
	if err != nil {
		return nil, d.errorf(err, "read hosts")
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var hs hostScan
		if err := rows.Scan(append([]any{&id}, hs.dest()...)...); err != nil {
			return nil, d.errorf(err, "read hosts")
		}
		if i, ok := index[id]; ok {
			runs[i].Hosts = append(runs[i].Hosts, hs.host())
		}
	}
	if err := rows.Err(); err != nil {
		return nil, d.errorf(err, "read hosts")
	}
	return runs, nil
}

// Entries returns host rows, newest run first (hosts by name within a
// run). f.Limit counts rows.
func (d *DB) Entries(ctx context.Context, f Filter) ([]Entry, error) {
	where, args := "", []any{}
	if f.Host != "" {
		where = "WHERE h.host = ?"
		args = append(args, f.Host)
	}
	q := "SELECT " + runCols + ", " + hostCols + " FROM hosts h JOIN runs r ON r.id = h.run_id " + where + " " +
		newestFirst + ", h.host" + limitClause(f.Limit)
	return d.entries(ctx, q, args...)
}

// Deployed answers "what is deployed where, since when and by whom": for
// each host (of hosts, or every host when none is given), its latest run
// whose result was Deployed, leaving out dry activations, which change
// nothing. Hosts never deployed are absent.
func (d *DB) Deployed(ctx context.Context, hosts ...string) (map[string]Entry, error) {
	where, args := "", []any{}
	if len(hosts) > 0 {
		where = " AND h.host IN (?" + strings.Repeat(", ?", len(hosts)-1) + ")"
		for _, h := range hosts {
			args = append(args, h)
		}
	}
	q := `SELECT ` + runCols + `, ` + hostCols + ` FROM (
		SELECT h.*, ROW_NUMBER() OVER (PARTITION BY h.host ORDER BY r.finished_ms DESC, r.id DESC) AS n
		FROM hosts h JOIN runs r ON r.id = h.run_id
		WHERE h.result = '` + Deployed + `' AND r.mode <> 'dry-activate'` + where + `
	) h JOIN runs r ON r.id = h.run_id WHERE h.n = 1 ORDER BY h.host`
	es, err := d.entries(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	m := make(map[string]Entry, len(es))
	for _, e := range es {
		m[e.Host.Name] = e
	}
	return m, nil
}

func (d *DB) entries(ctx context.Context, q string, args ...any) ([]Entry, error) {
	rows, err := d.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, d.errorf(err, "read history")
	}
	defer rows.Close()
	var es []Entry
	for rows.Next() {
		var hs hostScan
		r, err := scanRun(rows, hs.dest()...)
		if err != nil {
			return nil, d.errorf(err, "read history")
		}
		es = append(es, Entry{Run: r, Host: hs.host()})
	}
	if err := rows.Err(); err != nil {
		return nil, d.errorf(err, "read history")
	}
	return es, nil
}

// Check runs SQLite's integrity check and returns an error unless the
// database is sound.
func (d *DB) Check(ctx context.Context) error {
	var res string
	if err := d.db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil {
		return d.errorf(err, "integrity check")
	}
	if res != "ok" {
		return d.errorf(errors.New(res), "integrity check")
	}
	return nil
}
