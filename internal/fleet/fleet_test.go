package fleet

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/nix"
)

// A closure walks references from its root; closures that share a path
// share its record (one per nix path-info answer, not one per host).
func TestClosureOf(t *testing.T) {
	infos := indexInfos([]nix.PathInfo{
		{Path: "/t", References: []string{"/etc", "/base", "/t"}},
		{Path: "/etc", References: []string{"/base"}},
		{Path: "/base", References: []string{}},
		{Path: "/other", References: []string{"/base"}},
	})
	var got []string
	t1 := closureOf("/t", infos)
	for _, p := range t1 {
		got = append(got, p.Path)
	}
	if d := cmp.Diff([]string{"/t", "/etc", "/base"}, got); d != "" {
		t.Error(d)
	}
	other := closureOf("/other", infos)
	if len(other) != 2 || other[1] != t1[2] || other[1] != infos["/base"] {
		t.Errorf("the closures of /t and /other do not share /base's record: %p, %p", t1[2], other[1])
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

func TestNixErrorOfAFailedCommit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"path collected", []string{
			"activating the configuration...",
			"warning: error: unable to download 'https://cache.nixos.org/nix-cache-info': Couldn't resolve host name (6); retrying in 285 ms",
			"don't know how to build these paths:",
			"  /nix/store/aaa-nixos-system-web1",
			"error: build of '/nix/store/aaa-nixos-system-web1' failed",
			"activating the configuration...",
		}, "don't know how to build these paths: /nix/store/aaa-nixos-system-web1; error: build of '/nix/store/aaa-nixos-system-web1' failed"},
		{"plain error", []string{"setting up /etc...", "error: opening lock file '/nix/var/nix/profiles/system.lock': Permission denied"},
			"error: opening lock file '/nix/var/nix/profiles/system.lock': Permission denied"},
		{"none", []string{"activating the configuration..."}, ""},
	} {
		if got := nixError(tc.lines); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// The hosts whose deploy starts as soon as they are connected: the first
// Parallel hosts of the first wave (the canary, or the hosts that are not
// critical). The others' sessions start at connect time.
func TestStartsAtOnce(t *testing.T) {
	hosts := []flake.Host{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}}
	hosts[0].Deployment.Critical = true
	for _, tc := range []struct {
		name     string
		canary   int
		parallel int
		want     string // the hosts that start at once
	}{
		{"one wave, all at once", 0, 10, "bcd"},
		{"one wave, two at once", 0, 2, "bc"},
		{"a canary of one", 1, 10, "b"},
	} {
		r := &run{hosts: hosts, Options: Options{Canary: tc.canary, Parallel: tc.parallel}}
		got := ""
		for _, h := range hosts {
			if r.startsAtOnce(h.Name) {
				got += h.Name
			}
		}
		if got != tc.want {
			t.Errorf("%s: %q start at once, want %q", tc.name, got, tc.want)
		}
	}
}

// --target-host gives the one selected host its destination (and login,
// with USER@); more hosts, or --local, are refused.
func TestTargetHostOf(t *testing.T) {
	hosts := []flake.Host{{Name: "web1", Deployment: flake.Settings{TargetHost: "nowhere.invalid", TargetUser: "root"}}}
	if err := targetHostOf(hosts, "deploy@10.0.0.5", false); err != nil {
		t.Fatal(err)
	}
	if d := hosts[0].Deployment; d.TargetHost != "10.0.0.5" || d.TargetUser != "deploy" {
		t.Errorf("got %+v", d)
	}
	if err := targetHostOf(hosts, "web1.example.com", false); err != nil || hosts[0].Deployment.TargetHost != "web1.example.com" || hosts[0].Deployment.TargetUser != "deploy" {
		t.Errorf("without a user: %+v, %v", hosts[0].Deployment, err)
	}
	two := []flake.Host{{Name: "web1"}, {Name: "web2"}}
	for _, tc := range []struct {
		hosts []flake.Host
		local bool
		want  string
	}{
		{two, false, "--target-host is one host's address, and 2 hosts are selected: web1, web2"},
		{hosts, true, "--local and --target-host do not go together"},
	} {
		err := targetHostOf(tc.hosts, "10.0.0.5", tc.local)
		if fe, ok := fault.As(err); !ok || fe.Class != fault.Usage || fe.Msg != tc.want {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}
