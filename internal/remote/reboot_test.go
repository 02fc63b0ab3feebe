package remote

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
)

func TestParseBoot(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want Boot
	}{
		{"same kernel", "boot_id=b1\ncurrent=/nix/store/new\nbooted=/nix/store/old\n" +
			"booted_kernel=/nix/store/k1/bzImage\ncurrent_kernel=/nix/store/k1/bzImage\n" +
			"booted_initrd=/nix/store/i1/initrd\ncurrent_initrd=/nix/store/i1/initrd\n" +
			"booted_kernel-modules=/nix/store/m1\ncurrent_kernel-modules=/nix/store/m1\n",
			Boot{ID: "b1", Current: "/nix/store/new", Booted: "/nix/store/old"}},
		{"new kernel and modules", "boot_id=b1\ncurrent=/nix/store/new\nbooted=/nix/store/old\n" +
			"booted_kernel=/nix/store/k1/bzImage\ncurrent_kernel=/nix/store/k2/bzImage\n" +
			"booted_initrd=/nix/store/i1/initrd\ncurrent_initrd=/nix/store/i1/initrd\n" +
			"booted_kernel-modules=/nix/store/m1\ncurrent_kernel-modules=/nix/store/m2\n",
			Boot{ID: "b1", Current: "/nix/store/new", Booted: "/nix/store/old", Differ: []string{"kernel", "kernel-modules"}}},
		{"a part missing on one side is not compared", "boot_id=b1\ncurrent=/c\nbooted=/b\n" +
			"booted_kernel=\ncurrent_kernel=/nix/store/k2/bzImage\n" +
			"booted_initrd=/nix/store/i1/initrd\ncurrent_initrd=\n",
			Boot{ID: "b1", Current: "/c", Booted: "/b"}},
		{"no booted system (a container)", "boot_id=b1\ncurrent=/c\nbooted=\n" +
			"booted_kernel=\ncurrent_kernel=/nix/store/k2/bzImage\n",
			Boot{ID: "b1", Current: "/c"}},
		{"macOS boot time", "boot_id={ sec = 1700000000, usec = 0 } Tue Nov 14 22:13:20 2023\ncurrent=/c\nbooted=\n",
			Boot{ID: "{ sec = 1700000000, usec = 0 } Tue Nov 14 22:13:20 2023", Current: "/c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseBoot(tt.out)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Error(d)
			}
			if got.RebootRequired() != (len(tt.want.Differ) > 0) {
				t.Errorf("RebootRequired() = %v", got.RebootRequired())
			}
		})
	}
}

// TestBootScript runs reboot.sh under dash against a fake root: links to
// the same kernel through different paths are the same kernel (readlink -f),
// a part one system lacks is left out.
func TestBootScript(t *testing.T) {
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Skip("dash is not installed")
	}
	root := t.TempDir()
	mk := func(path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, path), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, path string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(root, path)); err != nil {
			t.Fatal(err)
		}
	}
	store := filepath.Join(root, "store")
	for _, d := range []string{"store/k1", "store/k2", "store/i1", "store/old", "store/new", "run"} {
		mk(d)
	}
	for _, f := range []string{"k1/bzImage", "k2/bzImage", "i1/initrd"} {
		if err := os.WriteFile(filepath.Join(store, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link(store+"/k1/bzImage", "store/old/kernel")
	link(store+"/i1/initrd", "store/old/initrd")
	link(store+"/k1", "store/old/kernel-modules")
	link(store+"/k2/bzImage", "store/new/kernel")
	link("../i1/initrd", "store/new/initrd") // another path to the same file
	link(store+"/old", "run/booted-system")
	link(store+"/new", "run/current-system")

	out, err := exec.Command(dash, "-c", bootScript, "sh", root).Output()
	if err != nil {
		t.Fatal(err)
	}
	b := parseBoot(string(out))
	want := Boot{ID: b.ID, Current: store + "/new", Booted: store + "/old", Differ: []string{"kernel"}}
	if d := cmp.Diff(want, b); d != "" {
		t.Errorf("%s\n%s", d, out)
	}
	if len(b.ID) < 32 && !strings.Contains(b.ID, "sec") {
		t.Errorf("boot id %q", b.ID)
	}
}

func TestConnectionDropped(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"ssh lost the connection", fault.New("h", fault.SSH, "", "ssh exited with status 255 without a reason"), true},
		{"keep-alive timeout", fault.New("h", fault.Timeout, "", "Timeout, server not responding"), true},
		{"plain exit 255", &command.Error{ExitCode: 255}, true},
		{"sudo refused", fault.New("h", fault.Sudo, "", "deploy may not use sudo"), false},
		{"auth refused", fault.New("h", fault.Auth, "", "refused"), false},
		{"command failed", &command.Error{ExitCode: 1}, false},
		{"other", errors.New("x"), false},
	}
	for _, tt := range tests {
		if got := connectionDropped(tt.err); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestBootScriptShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Skip("shellcheck is not installed")
	}
	out, err := exec.Command("shellcheck", "-S", "warning", "-s", "sh", "reboot.sh").CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck reboot.sh: %v\n%s", err, out)
	}
}
