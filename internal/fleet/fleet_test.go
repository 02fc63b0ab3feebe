package fleet

import (
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/nix"
	"github.com/skiffdeploy/skiff/internal/transport"
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

// A colmena node whose targetUser is null logs in as the user its ssh
// configuration gives it (ssh -G), else as the local user; --target-user
// wins, and a host with a targetUser of its own is left alone.
func TestUsersFromSSH(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no ssh")
	}
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(cfg, []byte("Host web1 10.0.0.7\n  User alice\nHost bad\n  User -oProxyCommand=x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	run := &command.Runner{}
	opts := transport.Options{ConfigFile: cfg}
	hosts := []flake.Host{
		{Name: "web1", UserFromSSH: true},
		{Name: "web2", UserFromSSH: true},
		{Name: "web3", UserFromSSH: true, Deployment: flake.Settings{TargetHost: "10.0.0.7"}},
		{Name: "db1", Deployment: flake.Settings{TargetUser: "root"}},
		{Name: "db2"},
	}
	if err := UsersFromSSH(context.Background(), run, opts, hosts, ""); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range hosts {
		got = append(got, h.Deployment.TargetUser)
	}
	if want := []string{"alice", me.Username, "alice", "root", ""}; !slices.Equal(got, want) {
		t.Errorf("logins %q, want %q", got, want)
	}
	given := []flake.Host{{Name: "web1", UserFromSSH: true}}
	if err := UsersFromSSH(context.Background(), run, opts, given, "deploy"); err != nil || given[0].Deployment.TargetUser != "" {
		t.Errorf("with --target-user: %+v, %v (TargetOf gives --target-user)", given[0].Deployment, err)
	}
	bad := []flake.Host{{Name: "bad", UserFromSSH: true}}
	err = UsersFromSSH(context.Background(), run, opts, bad, "")
	if fe, ok := fault.As(err); !ok || fe.Host != "bad" || !strings.Contains(fe.Msg, "invalid user") {
		t.Errorf("a hostile User: %v", err)
	}
}
