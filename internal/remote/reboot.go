package remote

import (
	"bufio"
	"context"
	_ "embed" // the host-side boot probe
	"errors"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/transport"
)

//go:embed reboot.sh
var bootFile string

// bootScript is reboot.sh without its comments.
var bootScript = withoutComments(bootFile)

// Boot is what a host booted: its boot id, the systems it runs and booted,
// and the parts of the running system that only a reboot puts in place.
type Boot struct {
	ID      string // /proc/sys/kernel/random/boot_id (macOS: the boot time); changes at every boot
	Current string // /run/current-system target
	Booted  string // /run/booted-system target
	// Differ names those of kernel, initrd and kernel-modules whose
	// running-system link resolves elsewhere than the booted system's:
	// the host needs a reboot to run them. Parts either system lacks are
	// not compared.
	Differ []string
}

// RebootRequired reports whether the host runs a system whose kernel,
// initrd or kernel modules it has not booted.
func (b Boot) RebootRequired() bool { return len(b.Differ) > 0 }

// bootParts are compared between the booted and the running system, as
// NixOS's switch-to-configuration does to say that a reboot is needed.
var bootParts = []string{"kernel", "initrd", "kernel-modules"}

// ReadBoot reads the host's boot id and booted system, without
// privileges. fresh opens a new connection instead of the shared one (to
// poll a host that reboots).
func (h *Host) ReadBoot(ctx context.Context, fresh bool) (Boot, error) {
	res, err := h.run(ctx, "read boot state", transport.Exec{Argv: []string{"sh", "-c", bootScript}, Fresh: fresh})
	if err != nil {
		return Boot{}, err
	}
	return parseBoot(string(res.Stdout)), nil
}

func parseBoot(out string) Boot {
	var b Boot
	kv := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		kv[k] = strings.TrimSpace(v)
	}
	b.ID, b.Current, b.Booted = kv["boot_id"], kv["current"], kv["booted"]
	for _, p := range bootParts {
		booted, current := kv["booted_"+p], kv["current_"+p]
		if booted != "" && current != "" && booted != current {
			b.Differ = append(b.Differ, p)
		}
	}
	return b
}

// Reboot asks the host to reboot, with the deploy's privileges:
// "systemctl reboot" on NixOS, "shutdown -r now" on nix-darwin. The
// connection may end with the command (ssh then exits 255): that is the
// reboot under way, not an error. Whether the host really rebooted is for
// the caller to see (its boot id changes).
func (h *Host) Reboot(ctx context.Context, darwin bool) error {
	argv := []string{"systemctl", "reboot"}
	if darwin {
		argv = []string{"shutdown", "-r", "now"}
	}
	_, err := h.run(ctx, "reboot", transport.Exec{Argv: h.priv(argv...)})
	if err == nil || connectionDropped(err) {
		return nil
	}
	return err
}

// connectionDropped reports whether err is ssh losing a connection it had
// (exit 255, no refusal by the host's sshd).
func connectionDropped(err error) bool {
	switch fault.ClassOf(err) {
	case fault.SSH, fault.Timeout:
		return true
	case "":
		var ce *command.Error
		return errors.As(err, &ce) && ce.ExitCode == 255
	}
	return false
}
