// Package history is skiff's record of runs: an embedded SQLite database
// (pure Go, modernc.org/sqlite) holding who ran which command from which
// flake revision, and per host the old and new system, the result, the
// time spent in each phase and the error.
//
// The database uses write-ahead logging and a busy timeout, and writes a
// run in one immediate transaction, so several skiff processes may record
// at once. Its schema is versioned with PRAGMA user_version. The package
// takes a path; choosing it (flags, environment) is the caller's job.
package history
