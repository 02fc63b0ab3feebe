package remote

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestFactsScript runs facts.sh under dash against a fake root: the
// store's free space, the Nix database's writability (the test runs as
// root, or the store is reported as not writable through sudo) and skiff's
// deploy lock, held by a live keeper.
func TestFactsScript(t *testing.T) {
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Skip("dash is not installed")
	}
	root := t.TempDir()
	for _, d := range []string{"nix/store", "nix/var/nix/db", "run/skiff/lock"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	owner := "user=alice\nmachine=laptop\nsince=2026-11-27T07:45:00Z\nkeeper=" + strconv.Itoa(os.Getpid()) + "\n"
	if err := os.WriteFile(filepath.Join(root, "run/skiff/lock/owner"), []byte(owner), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(dash, "-c", factsScript, "sh", root).Output()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	f := parseFacts(string(out))
	if f.Arch == "" || f.Kernel == "" {
		t.Errorf("no platform: %+v", f)
	}
	if len(f.Disks) != 1 || f.Disks[0].Path != "/nix/store" || f.Disks[0].Free < 0 || f.Disks[0].Size <= 0 {
		t.Errorf("disks: %+v", f.Disks)
	}
	if os.Geteuid() == 0 && (!f.StoreRW || f.SudoTried) {
		t.Errorf("as root: store writable %v (%s), sudo tried %v", f.StoreRW, f.StoreErr, f.SudoTried)
	}
	if left, _ := filepath.Glob(filepath.Join(root, "nix/var/nix/db/.skiff-doctor.*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	want := []LockInfo{{Path: "/run/skiff/lock", Held: true, Owner: "user=alice machine=laptop since=2026-11-27T07:45:00Z "}}
	if d := cmp.Diff(want, f.Locks); d != "" {
		t.Error(d)
	}
	if f.Systemd {
		t.Error("the machine's own systemd was asked")
	}
}

func TestParseFactsSudo(t *testing.T) {
	f := parseFacts("sudo\t1\tsudo: a password is required\n")
	if !f.SudoTried || f.SudoCode != 1 || f.SudoErr != "sudo: a password is required" {
		t.Errorf("%+v", f)
	}
}

func TestFactsScriptShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Skip("shellcheck is not installed")
	}
	out, err := exec.Command("shellcheck", "-S", "warning", "-s", "sh", "facts.sh").CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck facts.sh: %v\n%s", err, out)
	}
}
