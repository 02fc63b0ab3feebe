package fleet

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/remote"
	"github.com/skiffdeploy/skiff/internal/transport"
)

func TestRunning(t *testing.T) {
	for _, tc := range []struct {
		st   remote.State
		want string
	}{
		{remote.State{Current: "/nix/store/a", Profile: "/nix/store/a", Generation: 41}, "generation 41"},
		{remote.State{Current: "/nix/store/b", Profile: "/nix/store/a", Generation: 41}, "/nix/store/b (profile at generation 41)"},
		{remote.State{Current: "/nix/store/b"}, "/nix/store/b"},
		{remote.State{}, "no deployed system"},
	} {
		if got := running(tc.st); got != tc.want {
			t.Errorf("running(%+v) = %q, want %q", tc.st, got, tc.want)
		}
	}
}

func TestInterruptedIsItsOwnClass(t *testing.T) {
	err := interrupted("web1", "during the copy", "nothing was activated")
	fe, ok := fault.As(err)
	if !ok || fe.Class != fault.Interrupted || fe.Msg != "interrupted during the copy; nothing was activated" || !strings.Contains(fe.Hint, "skiff deploy web1") {
		t.Errorf("%#v", err)
	}
	if got := (Result{Status: Interrupted, Err: err}).Class(); got != "interrupted" {
		t.Errorf("class %q", got)
	}
}

func TestNoSpace(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		words string
		maybe bool
	}{
		{[]string{"activating the configuration...", "error: writing to file: No space left on device"}, "No space left on device", false},
		{[]string{"error: executing SQLite statement 'COMMIT': database or disk is full"}, "database or disk is full", false},
		{[]string{"error: executing SQLite statement 'pragma synchronous = normal': disk I/O error (in '/nix/var/nix/db/db.sqlite')"}, "", true},
		{[]string{"error: path '/nix/store/x' is not valid"}, "", false},
		{nil, "", false},
	} {
		words, maybe := noSpace(tc.lines)
		if words != tc.words || maybe != tc.maybe {
			t.Errorf("noSpace(%q) = %q, %v; want %q, %v", tc.lines, words, maybe, tc.words, tc.maybe)
		}
	}
}

// A full disk that the host's output names for certain needs no round trip:
// the plain path's SetProfile failure (classified disk by package remote)
// reaches the summary as "out of disk space".
func TestProfileFailedOnAFullDiskSaysOutOfDiskSpace(t *testing.T) {
	r := &run{Options: Options{Flake: flake.Ref{URL: "/srv/infra"}, SSH: transport.Options{ConfigFile: "/lab/ssh_config"}}}
	ce := &command.Error{Argv: []string{"ssh"}, ExitCode: 1, Stderr: "error: writing to file: No space left on device\n"}
	cause := fault.Wrap(ce, "web1", fault.Disk, "free space", "set the system profile: no space left on the host's disk")
	err := r.outOfSpace(context.Background(), nil, "web1", "setting the system profile failed",
		"nothing was activated, the host still runs "+running(remote.State{Current: "/a", Profile: "/a", Generation: 3}), cause)
	fe, ok := fault.As(err)
	if !ok {
		t.Fatalf("%v is not classified", err)
	}
	want := fault.Error{Host: "web1", Class: fault.Disk,
		Msg:  "out of disk space: setting the system profile failed (No space left on device); nothing was activated, the host still runs generation 3",
		Hint: `free space on the host: run "skiff gc web1 --keep 5 --flake /srv/infra -F /lab/ssh_config" to delete old generations and collect garbage, or deploy with --gc`}
	if d := cmp.Diff(want, fault.Error{Host: fe.Host, Class: fe.Class, Msg: fe.Msg, Hint: fe.Hint}); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
	if !errors.Is(err, ce) {
		t.Error("the cause is lost")
	}
	// Anything else is left as it is.
	other := errors.New("web1: set the system profile: exit status 1")
	if got := r.outOfSpace(context.Background(), nil, "web1", "x", "y", other); got != other {
		t.Errorf("got %v, want the error unchanged", got)
	}
}

func TestCopyFillingTheDiskSaysOutOfDiskSpace(t *testing.T) {
	r := &run{}
	c := &remote.Host{Name: "web1", Conn: &transport.SSH{Target: transport.Target{Host: "web1", User: "root"}}}
	ce := &command.Error{Argv: []string{"nix", "copy"}, ExitCode: 1,
		Stderr: "error: writing to file: No space left on device\n"}
	fe, ok := fault.As(r.copyError(c, ce.Argv, ce))
	if !ok || fe.Class != fault.Disk || !strings.HasPrefix(fe.Msg, "out of disk space: the copy to root@web1 filled the host's disk (No space left on device)") ||
		!strings.Contains(fe.Hint, `"skiff gc web1 --keep 5 --flake`) {
		t.Errorf("%#v", fe)
	}
}
