package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/transport"
)

func TestTargetCache(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	ref := flake.Ref{URL: "path:/srv/fleet"}
	web1 := transport.Target{Host: "10.0.0.1", User: "deploy", Port: 2222}
	db1 := transport.Target{Host: "db1"}
	c := newTargetCache(ref)
	if got := c.Load([]string{"web1"}); got != nil {
		t.Fatalf("empty cache guessed %v", got)
	}
	c.Save([]string{"@web"}, map[string]transport.Target{"web1": web1})
	c.Save(nil, map[string]transport.Target{"web1": web1, "db1": db1})
	tests := []struct {
		selection []string
		want      map[string]transport.Target
	}{
		{[]string{"@web"}, map[string]transport.Target{"web1": web1}},
		{nil, map[string]transport.Target{"web1": web1, "db1": db1}},
		{[]string{"web1"}, map[string]transport.Target{"web1": web1}}, // names: whichever selection reached them
		{[]string{"web1,db1"}, map[string]transport.Target{"web1": web1, "db1": db1}},
		{[]string{"web2"}, nil}, // never reached
		{[]string{"web*"}, nil}, // a glob never seen
		{[]string{"@db"}, nil},  // a tag never seen
	}
	c = newTargetCache(ref) // read back from the file
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, c.Load(tc.selection)); diff != "" {
			t.Errorf("Load(%q) (-want +got):\n%s", tc.selection, diff)
		}
	}
	if got := newTargetCache(flake.Ref{URL: "path:/srv/other"}).Load(nil); got != nil {
		t.Errorf("another flake's cache guessed %v", got)
	}
	// The systems the last deploy left: merged, an empty path forgets.
	c.SaveSystems(map[string]string{"web1": "/nix/store/a-web1", "db1": "/nix/store/a-db1"})
	c.SaveSystems(map[string]string{"web1": "/nix/store/b-web1", "db1": ""})
	if diff := cmp.Diff(map[string]string{"web1": "/nix/store/b-web1"}, newTargetCache(ref).Systems()); diff != "" {
		t.Errorf("Systems (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]transport.Target{"web1": web1}, c.Load([]string{"web1"})); diff != "" {
		t.Errorf("saving systems lost the targets (-want +got):\n%s", diff)
	}
	if filepath.Dir(c.file) != filepath.Join(filepathOf(t), "skiff") {
		t.Errorf("cache file %s is not in the cache directory", c.file)
	}
}

func filepathOf(t *testing.T) string {
	t.Helper()
	return os.Getenv("XDG_CACHE_HOME")
}
