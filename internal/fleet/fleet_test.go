package fleet

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/nix"
	"github.com/skiffdeploy/skiff/internal/remote"
)

func TestUpToDate(t *testing.T) {
	const out = "/nix/store/new"
	running := remote.State{Current: out, Profile: out, Generation: 3}
	testOnly := remote.State{Current: out, Profile: "/nix/store/old", Generation: 2}
	bootOnly := remote.State{Current: "/nix/store/old", Profile: out, Generation: 3}
	for _, tc := range []struct {
		mode Mode
		st   remote.State
		want bool
	}{
		{Switch, running, true},
		{Switch, testOnly, false}, // running but not the boot default
		{Switch, bootOnly, false},
		{Boot, bootOnly, true},
		{Test, testOnly, true},
		{Test, bootOnly, false},
		{DryActivate, running, false},
		{Switch, remote.State{}, false},
	} {
		if got := upToDate(tc.mode, tc.st, out); got != tc.want {
			t.Errorf("upToDate(%s, %+v) = %v, want %v", tc.mode, tc.st, got, tc.want)
		}
	}
}

func TestClosureOf(t *testing.T) {
	infos := map[string]nix.PathInfo{
		"/t":     {Path: "/t", References: []string{"/etc", "/base", "/t"}},
		"/etc":   {Path: "/etc", References: []string{"/base"}},
		"/base":  {Path: "/base", References: []string{}},
		"/other": {Path: "/other"},
	}
	var got []string
	for _, p := range closureOf("/t", infos) {
		got = append(got, p.Path)
	}
	if d := cmp.Diff([]string{"/t", "/etc", "/base"}, got); d != "" {
		t.Error(d)
	}
}

func TestParseMode(t *testing.T) {
	for _, s := range []string{"switch", "boot", "test", "dry-activate"} {
		if m, err := ParseMode(s); err != nil || string(m) != s {
			t.Errorf("ParseMode(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseMode("switch;id"); err == nil {
		t.Error("bad mode accepted")
	}
	if !Switch.MakesGeneration() || !Boot.MakesGeneration() || Test.MakesGeneration() || DryActivate.MakesGeneration() {
		t.Error("MakesGeneration wrong")
	}
}
