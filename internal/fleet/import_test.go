package fleet

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/nix"
	"github.com/skiffdeploy/skiff/internal/remote"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// The missing paths go as one export stream only from this machine,
// with nothing substituted on the host, to a login that writes as root,
// and when they fit one command line or skiff writes the stream itself;
// otherwise nix copy sends them.
func TestCanImport(t *testing.T) {
	host := func(user string, local bool) *remote.Host {
		return &remote.Host{Name: "web1", Conn: &transport.SSH{Target: transport.Target{Host: "web1", User: user, Local: local}}}
	}
	missing := []string{"/nix/store/aaa-system", "/nix/store/bbb-etc"}
	long := make([]string, 3000)
	for i := range long {
		long[i] = fmt.Sprintf("/nix/store/%032d-path", i)
	}
	// As many paths, each there with its nix path-info record: skiff
	// writes the stream itself (no command line).
	dir := t.TempDir()
	onDisk := make([]string, len(long))
	written := make([]*nix.PathInfo, len(long))
	for i := range long {
		onDisk[i] = filepath.Join(dir, filepath.Base(long[i]))
		if err := os.WriteFile(onDisk[i], nil, 0o644); err != nil {
			t.Fatal(err)
		}
		written[i] = &nix.PathInfo{Path: onDisk[i], NarHash: "sha256-x"}
	}
	tests := []struct {
		name    string
		r       *run
		c       *remote.Host
		missing []string
		want    bool
	}{
		{"root", &run{}, host("", false), missing, true},
		{"sudo without a password", &run{}, host("deploy", false), missing, true},
		{"sudo with a password", &run{}, &remote.Host{Name: "web1", Password: "pw", Conn: host("deploy", false).Conn}, missing, false},
		{"this machine", &run{}, host("", true), missing, false},
		{"substitutes on the host", &run{Options: Options{UseSubstitutes: true}}, host("", false), missing, false},
		{"a binary cache", &run{Options: Options{Cache: "s3://cache"}}, host("", false), missing, false},
		{"built on a build host", &run{builtOn: map[string]*remote.Host{"web1": host("", false)}}, host("", false), missing, false},
		{"nothing missing", &run{}, host("", false), nil, false},
		{"more than one command line", &run{}, host("", false), long, false},
		{"more than one command line, written by skiff", &run{closures: map[string][]*nix.PathInfo{"web1": written}}, host("", false), onDisk, true},
		{"a path the closure read missed", &run{closures: map[string][]*nix.PathInfo{"web1": written[1:]}}, host("", false), onDisk, false},
	}
	for _, tc := range tests {
		infos, got := tc.r.canImport(tc.c, tc.missing)
		if got != tc.want {
			t.Errorf("%s: canImport = %v, want %v", tc.name, got, tc.want)
		}
		// The records come with the answer when skiff writes the
		// stream, so that send does not gather them again.
		if written := tc.r.closures != nil && tc.want; (infos != nil) != written || written && len(infos) != len(tc.missing) {
			t.Errorf("%s: canImport gave %d records for %d paths", tc.name, len(infos), len(tc.missing))
		}
	}
}

// The import starts early only where a copy by export would be made and
// the last deploy from here did not leave the new system in the host's
// store.
func TestImportEarly(t *testing.T) {
	c := &remote.Host{Name: "web1", Conn: &transport.SSH{Target: transport.Target{Host: "web1"}}}
	h := flake.Host{Name: "web1", OutPath: "/nix/store/new-system"}
	r := &run{lastSystems: map[string]string{"web1": "/nix/store/old-system"}}
	if !r.importEarly(c, h) {
		t.Error("a host the last deploy left on another system: no early import")
	}
	r.lastSystems["web1"] = h.OutPath
	if r.importEarly(c, h) {
		t.Error("a host the last deploy left on the new system: early import")
	}
	if !(&run{}).importEarly(c, h) {
		t.Error("a host never deployed from here: no early import")
	}
	if (&run{Options: Options{Mode: DryActivate}}).importEarly(c, h) {
		t.Error("dry-activate copies nothing, yet an early import")
	}
}

// An export stopped because the import went away (SIGPIPE, or skiff's
// write of its output failing) is not the copy's cause; any other failure
// of the export is.
func TestBrokenPipe(t *testing.T) {
	passOn := &command.Error{Argv: []string{"nix-store"}, ExitCode: -1, Err: &fs.PathError{Op: "write", Path: "|1", Err: syscall.EPIPE}}
	said := &command.Error{Argv: []string{"nix-store"}, ExitCode: 1, Stderr: "error: writing to file: Broken pipe"}
	invalid := &command.Error{Argv: []string{"nix-store"}, ExitCode: 1, Stderr: "error: path '/nix/store/x' is not valid"}
	for _, tc := range []struct {
		err  error
		want bool
	}{{passOn, true}, {said, true}, {invalid, false}, {errors.New("other"), false}} {
		if got := brokenPipe(tc.err); got != tc.want {
			t.Errorf("brokenPipe(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if !strings.Contains(tail(invalid), "is not valid") {
		t.Errorf("tail(%v) = %q", invalid, tail(invalid))
	}
}
