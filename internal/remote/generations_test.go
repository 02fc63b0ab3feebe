package remote

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// fakeBin writes executable shell scripts, by name, into a new directory
// and returns it, to put first on a script's PATH.
func fakeBin(t *testing.T, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// loggingBin is a directory for PATH with a wrapper for each of names that
// are installed: it appends its name to the file log, then runs the real
// command.
func loggingBin(t *testing.T, names ...string) (bin, log string) {
	t.Helper()
	bin, log = t.TempDir(), filepath.Join(t.TempDir(), "log")
	for _, name := range names {
		real, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		script := "#!/bin/sh\necho " + name + " >>" + log + "\nexec " + real + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return bin, log
}

// The collection's script, under dash with a fake nix-store and df: the
// free space before and after around nix-store's summary, which
// parseFreed reads; a failed collection stops before the "after".
func TestGCScriptUnderDash(t *testing.T) {
	if _, err := exec.LookPath("dash"); err != nil {
		t.Skip("no dash")
	}
	for _, tc := range []struct {
		name string
		code int
		want Freed
	}{
		{"collected", 0, Freed{Paths: 12, Bytes: 1572864, Free: 300 * 1024}},
		{"nix-store failed", 1, Freed{Paths: 12, Bytes: 1572864, Free: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			count := filepath.Join(dir, "count")
			bin := fakeBin(t, map[string]string{
				"nix-store": fmt.Sprintf(`[ "$*" = --gc ] || exit 9; echo "12 store paths deleted, 1.50 MiB freed"; : >%s; exit %d`, count, tc.code),
				// 100 KiB free before the collection, 300 after.
				"df": fmt.Sprintf(`[ "$1" = -Pk ] || exit 9; echo "Filesystem 1024-blocks Used Available Capacity Mounted on"; if [ -e %s ]; then echo "/dev/vda 1000 700 300 70%% /nix"; else echo "/dev/vda 1000 900 100 90%% /nix"; fi`, count),
			})
			cmd := exec.Command("dash", "-c", gcScript)
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
			out, err := cmd.Output()
			if (err != nil) != (tc.code != 0) {
				t.Fatalf("exit: %v", err)
			}
			if !strings.HasPrefix(string(out), "before /dev/vda 1000 900 100 90% /nix\n") {
				t.Errorf("printed %q, want the free space before first", out)
			}
			if d := cmp.Diff(tc.want, parseFreed(string(out))); d != "" {
				t.Errorf("%s\n%s", d, out)
			}
		})
	}
}

// A nix-darwin system's user activation runs its activate-user when it
// has one, and is nothing otherwise. Under dash.
func TestActivateUserScriptUnderDash(t *testing.T) {
	if _, err := exec.LookPath("dash"); err != nil {
		t.Skip("no dash")
	}
	with, without := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(with, "activate-user"), []byte("#!/bin/sh\necho user activated\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("dash", "-c", activateUserScript, "sh", with).Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || string(out) != "user activated\n" {
		t.Errorf("with activate-user: %q, %v; want its output and exit code 3", out, err)
	}
	if out, err := exec.Command("dash", "-c", activateUserScript, "sh", without).Output(); err != nil || len(out) != 0 {
		t.Errorf("without: %q, %v; want nothing", out, err)
	}
}
