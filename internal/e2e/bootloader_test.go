package e2e

import (
	"strings"
	"testing"

	"github.com/skiffdeploy/skiff/internal/lab"
)

// --install-bootloader, as nixos-rebuild's: switch-to-configuration makes
// the new system the boot default with NIXOS_INSTALL_BOOTLOADER=1, under
// the supervisor (its commit's boot step) and in a plain activation; a
// host already running the system is activated again, since reinstalling
// the loader is the point; a mode that makes no boot default is refused
// before any host is touched. Without the flag nothing is installed;
// skiff rollback takes the flag too.
func TestInstallBootloader(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "bl1"})
	installs := func() []string {
		out := execIn(t, l, "bl1", "sh", "-c", "cat /nix/var/lab/bootloader-installs 2>/dev/null; true")
		if out == "" {
			return nil
		}
		return strings.Split(out, "\n")
	}
	dir := writeFlake(t, host("bl1", "generation = 1;"))
	wantCode(t, skiffOn(t, l, "deploy", "--flake", dir), 0)
	if got := installs(); got != nil {
		t.Errorf("a deploy without --install-bootloader installed the boot loader: %q", got)
	}
	current := execIn(t, l, "bl1", "readlink", "/run/current-system")

	// The same system, supervised: activated again, and the commit
	// installs the loader.
	r := skiffOn(t, l, "deploy", "--install-bootloader", "--flake", dir)
	wantCode(t, r, 0)
	wantContains(t, "output", r.stderr, "bl1: activate: switch-to-configuration test under a supervisor", "bl1: profile: confirmed")
	if got := installs(); len(got) != 1 || got[0] != current {
		t.Errorf("boot loader installs %q, want one of %s", got, current)
	}

	// A new generation in boot mode, plain.
	rewriteFlake(t, dir, host("bl1", "generation = 2;"))
	r = skiffOn(t, l, "deploy", "--install-bootloader", "--mode", "boot", "--json", "--flake", dir)
	wantCode(t, r, 0)
	_, h := jsonHost(t, r.stdout, "bl1")
	if got := installs(); len(got) != 2 || got[1] != h.NewPath {
		t.Errorf("boot loader installs %q, want the second of %s", got, h.NewPath)
	}
	if got := execIn(t, l, "bl1", "readlink", "/run/current-system"); got != current {
		t.Errorf("boot mode activated %s", got)
	}

	// skiff rollback takes it too: the generation it returns to is
	// installed as it becomes the boot default.
	r = skiffOn(t, l, "rollback", "bl1", "--install-bootloader", "--flake", dir)
	wantCode(t, r, 0)
	back := execIn(t, l, "bl1", "readlink", "-f", "/nix/var/nix/profiles/system")
	if got := installs(); len(got) != 3 || got[2] != back {
		t.Errorf("boot loader installs %q, want the third of %s", got, back)
	}

	r = skiffOn(t, l, "-x", "deploy", "--install-bootloader", "--mode", "test", "--flake", dir)
	wantCode(t, r, 2)
	wantContains(t, "errors", r.stderr, "--install-bootloader and --mode test do not go together")
	if strings.Contains(r.stderr, "+ ssh ") {
		t.Errorf("a refused deploy touched a host:\n%s", r.stderr)
	}
}
