package lab

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"
)

// assets holds the fixed scripts a lab installs: setup.sh (run through unshare to
// turn a namespace into a host) and the systemctl, journalctl, date, reboot and
// shutdown stand-ins.
//
//go:embed assets/setup.sh assets/systemctl assets/journalctl assets/date assets/reboot assets/shutdown
var assets embed.FS

// shims are the commands written to every host's shim dir (HOSTDIR/bin).
var shims = []string{"systemctl", "journalctl", "date", "reboot", "shutdown"}

// ClockOffsetFile steps a host's wall clock: while it holds a number of seconds
// (say -3600), the host's date prints the time shifted by that much. The host's
// monotonic clock (/proc/uptime) is the machine's and never moves.
const ClockOffsetFile = "/run/lab-systemd/clock-offset"

// installAsset writes the embedded asset name to path (mode 0755) atomically.
func installAsset(name, path string) error {
	data, err := assets.ReadFile("assets/" + name)
	if err != nil {
		return fmt.Errorf("read embedded %s: %w", name, err)
	}
	return writeFileAtomic(path, data, 0o755)
}

// writeFileAtomic writes data to a temporary file beside path and renames it over path,
// so that a reader (sshd, a shim) never sees a partial file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
