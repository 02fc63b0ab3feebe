package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
)

// sshdPath is where setup.sh starts sshd from (Debian's path).
const sshdPath = "/usr/sbin/sshd"

// tool finds a command in PATH or in the usual system directories (a test's PATH may
// lack the sbin directories).
func tool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or the system directories", name)
}

var (
	availableOnce sync.Once
	availableErr  error
)

// Available returns nil when this machine can run a lab: Linux, root, the tools
// (unshare, nsenter, mount, sshd, ssh, ssh-keygen, nix, nix-store, nix-daemon, sudo),
// working mount namespaces, and no wildcard listener on port 22 (which would keep the
// hosts' sshd from binding 127.0.S.x:22). Otherwise the error says what is missing.
func Available() error {
	availableOnce.Do(func() { availableErr = available() })
	return availableErr
}

func available() error {
	if runtime.GOOS != "linux" {
		return errors.New("lab: needs Linux mount namespaces, this is " + runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return errors.New("lab: needs root (mount namespaces, bind mounts, a second sshd)")
	}
	for _, name := range []string{"unshare", "nsenter", "mount", "ssh", "ssh-keygen", "nix", "nix-store", "nix-env", "nix-daemon", "sudo", "flock"} {
		if _, err := tool(name); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	if _, err := os.Stat(sshdPath); err != nil {
		return fmt.Errorf("lab: sshd: %w", err)
	}
	unshare, _ := tool("unshare")
	if out, err := exec.Command(unshare, "--mount", "--propagation", "private", "/bin/true").CombinedOutput(); err != nil {
		return fmt.Errorf("lab: mount namespaces do not work here: unshare: %w: %s", err, lastLines(out, 3))
	}
	if busy, err := wildcardSSHListener(); err != nil {
		return fmt.Errorf("lab: %w", err)
	} else if busy != "" {
		return fmt.Errorf("lab: %s listens on port 22 of every address (the machine's own sshd?), so lab hosts cannot listen on 127.0.S.x:22", busy)
	}
	return nil
}
