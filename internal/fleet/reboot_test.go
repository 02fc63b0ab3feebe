package fleet

import (
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/flake"
	"github.com/skiffdeploy/skiff/internal/remote"
)

func TestWantsReboot(t *testing.T) {
	const out = "/nix/store/new"
	nixos := flake.Host{Name: "web1", OutPath: out}
	darwin := flake.Host{Name: "mac1", OutPath: out, Kind: flake.KindDarwin}
	runs := remote.Boot{Current: out}
	newKernel := remote.Boot{Current: out, Differ: []string{"kernel"}}
	old := remote.Boot{Current: "/nix/store/old"}
	for _, tc := range []struct {
		name   string
		status Status
		boot   remote.Boot
		host   flake.Host
		want   bool
	}{
		{"deployed", Deployed, runs, nixos, true},
		{"up to date, runs it, same kernel", UpToDate, runs, nixos, false},
		{"up to date, needs a reboot for its kernel", UpToDate, newKernel, nixos, true},
		{"up to date for boot, runs the old system", UpToDate, old, nixos, true},
		{"darwin up to date: no kernel notion", UpToDate, newKernel, darwin, false},
		{"darwin deployed", Deployed, runs, darwin, true},
	} {
		if got := wantsReboot(tc.status, tc.boot, tc.host); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRebootMessages(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{rebootNote([]string{"kernel"}), "needs a reboot: the running system's kernel is not the booted system's"},
		{rebootNote([]string{"kernel", "initrd", "kernel-modules"}), "needs a reboot: the running system's kernel, initrd and kernel-modules are not the booted system's"},
		{notBack(2*time.Second, remote.Boot{Current: "/nix/store/old"}, fault.New("h", fault.Refused, "hint", "connection refused by 127.0.0.1:22")),
			"did not come back within 2s of the reboot (last try: connection refused by 127.0.0.1:22); before the reboot it ran /nix/store/old"},
		{notBack(time.Minute, remote.Boot{}, errStillUp),
			"did not come back within 1m0s of the reboot (last try: the host still runs the boot it had before the reboot (same boot id)); before the reboot it ran nothing"},
		{wrongSystem(remote.Boot{Current: "/nix/store/old", Booted: "/nix/store/old"}, "/nix/store/new"),
			"came back from its reboot running /nix/store/old, not the deployed system /nix/store/new"},
		{wrongSystem(remote.Boot{Current: "/nix/store/other", Booted: "/nix/store/old"}, "/nix/store/new"),
			"came back from its reboot running /nix/store/other, not the deployed system /nix/store/new (booted /nix/store/old)"},
		{joinNote("", "b"), "b"},
		{joinNote("a", "b"), "a; b"},
	} {
		if tc.got != tc.want {
			t.Errorf("got  %q\nwant %q", tc.got, tc.want)
		}
	}
}
