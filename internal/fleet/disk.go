package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/human"
	"github.com/skiffdeploy/skiff/internal/remote"
)

// A host whose /nix fills up says so in different words: "No space left on
// device" (a write), "database or disk is full" (SQLite), or, when SQLite
// cannot grow its shared-memory or write-ahead file (seen on a full tmpfs),
// only "disk I/O error". The first two are certain; the last is read as a
// full disk only when the store's filesystem is nearly full, which costs a
// round trip on that failure path alone.

// Disk-full evidence in a host's output.
const (
	noSpaceMsg  = "No space left on device"
	dbFullMsg   = "database or disk is full"
	diskIOError = "disk I/O error"
)

// noSpace returns the words of lines that say for certain that the host's
// disk is full, or "" when none does; maybe is true when a line could mean
// a full disk (an I/O error of Nix's database).
func noSpace(lines []string) (words string, maybe bool) {
	for _, l := range lines {
		switch {
		case strings.Contains(l, noSpaceMsg):
			return noSpaceMsg, false
		case strings.Contains(l, dbFullMsg):
			return dbFullMsg, false
		case strings.Contains(l, diskIOError):
			maybe = true
		}
	}
	return "", maybe
}

// diskFull tells whether lines, printed by a host step that failed, mean
// that the host's store filesystem is full, and in what words ("No space
// left on device", or "disk I/O error, 0 B free in /nix/store").
func (r *run) diskFull(ctx context.Context, c *remote.Host, lines []string) (string, bool) {
	words, maybe := noSpace(lines)
	if words != "" {
		return words, true
	}
	if !maybe {
		return "", false
	}
	free, err := c.StoreFree(ctx)
	if err != nil || free < 0 || free >= DiskMargin {
		return "", false
	}
	return fmt.Sprintf("%s, %s free in /nix/store", diskIOError, human.Bytes(free)), true
}

// gcCommand is the skiff gc command line, runnable as printed after this
// run: the same flake, ssh options and login as the deploy.
func (r *run) gcCommand() remote.GCCommand {
	return remote.GCCommand{Flake: r.Flake.URL, SSH: r.SSH, User: r.User, Keep: r.gcKeep()}
}

// diskHint says how to free space on a host whose disk filled up.
func (r *run) diskHint(host string) string {
	return r.gcCommand().DiskHint(host) + ", or deploy with --gc"
}

// DiskHint says how to free space on the named host, when its store
// lacks room for what the session would copy.
func (s *Session) DiskHint(host string) string { return s.run.diskHint(host) }

// stderrLines are the lines of err's standard error, when it is a failed
// command's.
func stderrLines(err error) []string {
	var ce *command.Error
	if errors.As(err, &ce) {
		return strings.Split(ce.Stderr, "\n")
	}
	if err != nil {
		return []string{err.Error()}
	}
	return nil
}

// outOfSpace explains a host step that failed (what: "setting the system
// profile failed") as a full disk, when its output says so; otherwise err
// is returned as it is. state is what the host runs now.
func (r *run) outOfSpace(ctx context.Context, c *remote.Host, host, what, state string, err error) error {
	if fault.ClassOf(err) == fault.Interrupted {
		return err
	}
	words, ok := r.diskFull(ctx, c, stderrLines(err))
	if !ok {
		return err
	}
	return fault.Wrap(err, host, fault.Disk, r.diskHint(host), "out of disk space: %s (%s); %s", what, words, state)
}
