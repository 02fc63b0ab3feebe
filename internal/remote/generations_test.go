package remote

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDoomedNeverTakesWhatMustStay(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	day := 24 * time.Hour
	mk := func(n int, age time.Duration, path string) Generation {
		return Generation{Number: n, Date: now.Add(-age), Path: path}
	}
	g := Generations{Current: "/s/cur", Booted: "/s/boot", List: []Generation{
		mk(1, 90*day, "/s/1"),
		mk(2, 80*day, "/s/boot"), // holds the booted system
		mk(3, 70*day, "/s/3"),
		mk(4, 60*day, "/s/cur"), // holds the running system
		mk(5, 5*day, "/s/5"),
		mk(6, 4*day, "/s/6"),
		mk(7, 1*day, "/s/7"),
	}}
	g.List[6].BootDefault = true
	nums := func(l []Generation) []int {
		var n []int
		for _, x := range l {
			n = append(n, x.Number)
		}
		return n
	}
	for _, tc := range []struct {
		p    GCPolicy
		want []int
	}{
		{GCPolicy{Keep: 2}, []int{1, 3, 5}},
		{GCPolicy{Keep: 0}, []int{1, 3, 5, 6}},
		{GCPolicy{Keep: 10}, nil},
		{GCPolicy{Keep: 1, OlderThan: 30 * day}, []int{1, 3}},
	} {
		if d := cmp.Diff(tc.want, nums(tc.p.Doomed(g, now))); d != "" {
			t.Errorf("%+v: %s", tc.p, d)
		}
	}
}

func TestParseFreed(t *testing.T) {
	out := "before /dev/x 1000 900 100 90% /nix\n12 store paths deleted, 1.50 MiB freed\nafter /dev/x 1000 800 200 80% /nix\n"
	if d := cmp.Diff(Freed{Paths: 12, Bytes: 1572864, Free: 200 * 1024}, parseFreed(out)); d != "" {
		t.Error(d)
	}
}

func TestParseFacts(t *testing.T) {
	out := "arch\tx86_64\nkernel\tLinux\nnix\tnix-store (Nix) 2.8.0\nstorerw\tyes\n" +
		"df\t/nix/store\t/dev/vda 1000 400 600 40% /nix\nsystemd\tyes\nfailed\tdemo.service\n" +
		"lock\t/run/nixos/switch-to-configuration.lock\tyes\t\n"
	want := Facts{Arch: "x86_64", Kernel: "Linux", NixVersion: "nix-store (Nix) 2.8.0", StoreRW: true,
		Disks:   []Disk{{Path: "/nix/store", Device: "/dev/vda", Mount: "/nix", Size: 1000 * 1024, Free: 600 * 1024}},
		Systemd: true, Failed: []string{"demo.service"},
		Locks: []LockInfo{{Path: "/run/nixos/switch-to-configuration.lock", Held: true}}}
	if d := cmp.Diff(want, parseFacts(out)); d != "" {
		t.Error(d)
	}
}
