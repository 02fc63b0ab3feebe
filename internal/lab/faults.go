package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ChangeHostKey gives the host a new host key, as a reinstall would: sshd is restarted
// with it, while the lab's known_hosts keeps the old one, so clients see a CHANGED key.
// The old key is not restored.
func (h *Host) ChangeHostKey(ctx context.Context) error {
	wasRunning := h.Running()
	if err := h.StopSSHD(); err != nil {
		return err
	}
	key := filepath.Join(h.Dir, "etc", "ssh", "ssh_host_ed25519_key")
	for _, f := range []string{key, key + ".pub"} {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("change host key of %s: %w", h.Name, err)
		}
	}
	if err := sshKeygen(key, "root@"+h.Name); err != nil {
		return fmt.Errorf("change host key of %s: %w", h.Name, err)
	}
	if wasRunning {
		return h.StartSSHD(ctx)
	}
	return nil
}

// DropAvailable reports whether DropSSH can work here (iptables, root).
func DropAvailable() error {
	if _, err := exec.LookPath("iptables"); err != nil {
		return errors.New("iptables is not installed (apt-get install iptables)")
	}
	return exec.Command("iptables", "-w", "-S", "INPUT").Run()
}

// DropSSH makes the host's ssh port silently drop every packet (iptables on the
// host's loopback address), as a firewall or a powered-off host would: connections
// time out instead of being refused. The returned function removes the rule; call it.
func (h *Host) DropSSH() (undo func() error, err error) {
	rule := []string{"INPUT", "-d", h.Addr + "/32", "-p", "tcp", "--dport", "22", "-j", "DROP"}
	if out, err := exec.Command("iptables", append([]string{"-w", "-I"}, rule...)...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("drop packets to %s: %w: %s", h.Name, err, lastLines(out, 3))
	}
	return func() error {
		if out, err := exec.Command("iptables", append([]string{"-w", "-D"}, rule...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("stop dropping packets to %s: %w: %s", h.Name, err, lastLines(out, 3))
		}
		return nil
	}, nil
}
