package lab

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// DeployUser is the non-root user every lab host has (shell /bin/sh, home in the
// host's directory), authorized with the lab's client key like root.
const DeployUser = "deploy"

// ShimDir is where a host sees its shim dir (HOSTDIR/bin, bind-mounted).
const ShimDir = "/run/lab-systemd/bin"

// HostPath is the PATH of SSH sessions, sudo (secure_path) and Host.Exec on every
// host: the shim dir first, so that systemctl and journalctl are the stand-ins.
const HostPath = ShimDir + ":/run/current-system/sw/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// quoteConf quotes a path for sshd_config or ssh_config when it needs it.
func quoteConf(s string) string {
	if strings.ContainsAny(s, " \t\"'#") {
		return strconv.Quote(s)
	}
	return s
}

// ids picks the deploy user's uid and gid: the machine's own "deploy" entries if it has
// them, else the first id from 2000 that neither passwd nor group uses.
func deployIDs(passwd, group []byte) (uid, gid int) {
	usedUID, usedGID := map[int]bool{}, map[int]bool{}
	uid, gid = -1, -1
	for _, line := range strings.Split(string(passwd), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 4 {
			continue
		}
		u, _ := strconv.Atoi(f[2])
		usedUID[u] = true
		if f[0] == DeployUser {
			uid = u
			gid, _ = strconv.Atoi(f[3])
		}
	}
	for _, line := range strings.Split(string(group), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 3 {
			continue
		}
		g, _ := strconv.Atoi(f[2])
		usedGID[g] = true
	}
	if uid >= 0 {
		return uid, gid
	}
	for id := 2000; ; id++ {
		if !usedUID[id] && !usedGID[id] {
			return id, id
		}
	}
}

// withoutEntry drops the lines of an /etc database whose first field is name.
func withoutEntry(db []byte, name string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(string(db), "\n"), "\n") {
		if line == "" || strings.HasPrefix(line, name+":") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// unlockRoot makes root's shadow entry usable for public key logins: with UsePAM no,
// sshd refuses accounts whose password field starts with "!" (locked).
func unlockRoot(shadow string) string {
	lines := strings.Split(shadow, "\n")
	for i, line := range lines {
		if f := strings.Split(line, ":"); len(f) > 1 && f[0] == "root" && strings.HasPrefix(f[1], "!") {
			f[1] = "*"
			lines[i] = strings.Join(f, ":")
		}
	}
	return strings.Join(lines, "\n")
}

// passwordHash returns a SHA-512 crypt hash of password (openssl passwd -6, password on
// standard input).
func passwordHash(password string) (string, error) {
	openssl, err := tool("openssl")
	if err != nil {
		return "", err
	}
	cmd := exec.Command(openssl, "passwd", "-6", "-stdin")
	cmd.Stdin = strings.NewReader(password + "\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("openssl passwd: %w: %s", err, lastLines(stderr.Bytes(), 3))
	}
	hash := strings.TrimSpace(string(out))
	if !strings.HasPrefix(hash, "$6$") {
		return "", fmt.Errorf("openssl passwd: unexpected output %q", hash)
	}
	return hash, nil
}

// copyTree copies the regular files and directories under src to dst (symlinks are
// copied as the files they point to; other file types are skipped).
func copyTree(src, dst string, skip func(rel string) bool) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if rel != "." && skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		st, err := os.Stat(path)
		if err != nil {
			return nil // dangling symlink
		}
		switch {
		case st.IsDir():
			return os.MkdirAll(target, 0o755)
		case st.Mode().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, st.Mode().Perm())
		}
		return nil
	})
}

// prepare creates or refreshes the host's files: its directories, its host key (once),
// /etc/ssh (machine's client files, the host's sshd_config), passwd, group, shadow,
// sudoers and /etc/nix. The authorized keys are written by the lab, not here.
func (h *Host) prepare() error {
	for _, d := range []string{"nix", "bin", "home", "etc/ssh/authorized_keys.d", "etc/nix"} {
		if err := os.MkdirAll(filepath.Join(h.Dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(h.Dir, "root"), 0o700); err != nil {
		return err
	}
	sshDir := filepath.Join(h.Dir, "etc", "ssh")

	// The machine's client-side files (moduli, ssh_config, ssh_config.d); never its
	// host keys or sshd configuration.
	err := copyTree("/etc/ssh", sshDir, func(rel string) bool {
		return strings.HasPrefix(rel, "ssh_host_") || strings.HasPrefix(rel, "sshd_config") ||
			rel == "authorized_keys.d" || strings.HasPrefix(rel, "authorized_keys.d/")
	})
	if err != nil {
		return fmt.Errorf("copy /etc/ssh: %w", err)
	}

	hostKey := filepath.Join(sshDir, "ssh_host_ed25519_key")
	if _, err := os.Stat(hostKey); os.IsNotExist(err) {
		if err := sshKeygen(hostKey, "root@"+h.Name); err != nil {
			return err
		}
	}

	sshdConfig := strings.Join([]string{
		"# sshd of skiff lab host " + h.Name + " (rewritten at every start)",
		"ListenAddress " + h.Addr + ":22",
		"HostKey /etc/ssh/ssh_host_ed25519_key",
		"PidFile " + quoteConf(filepath.Join(h.Dir, "sshd.pid")),
		"AuthorizedKeysFile /etc/ssh/authorized_keys.d/%u",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"UsePAM no",
		"StrictModes no",
		"LogLevel VERBOSE",
		"MaxStartups " + h.maxStartups(),
		"MaxSessions 100",
		"PrintMotd no",
		"X11Forwarding no",
		"SetEnv PATH=" + HostPath,
		"Subsystem sftp /usr/lib/openssh/sftp-server",
		"",
	}, "\n")
	if err := writeFileAtomic(filepath.Join(sshDir, "sshd_config"), []byte(sshdConfig), 0o644); err != nil {
		return err
	}

	if err := h.writeAccounts(); err != nil {
		return err
	}
	return h.writeNixConf()
}

// maxStartups is the host's sshd MaxStartups: HostSpec.MaxStartups, else enough for
// a whole fleet connecting at once.
func (h *Host) maxStartups() string {
	if h.Spec.MaxStartups != "" {
		return h.Spec.MaxStartups
	}
	return "100:30:200"
}

// writeAccounts writes the host's passwd, group, shadow and sudoers, and creates the
// deploy user's home.
// plainRootShell gives root /bin/sh in a host's passwd: this machine's
// /root/.bashrc (shared by every host, since /root is not per host) does
// slow work that would otherwise run before every remote command, which a
// NixOS host does not do.
func plainRootShell(passwd string) string {
	lines := strings.Split(passwd, "\n")
	for i, l := range lines {
		if f := strings.Split(l, ":"); len(f) == 7 && f[0] == "root" {
			f[6] = "/bin/sh"
			lines[i] = strings.Join(f, ":")
		}
	}
	return strings.Join(lines, "\n")
}

func (h *Host) writeAccounts() error {
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return err
	}
	group, err := os.ReadFile("/etc/group")
	if err != nil {
		return err
	}
	shadow, err := os.ReadFile("/etc/shadow")
	if err != nil {
		return err
	}
	uid, gid := deployIDs(passwd, group)
	home := filepath.Join(h.Dir, "home", DeployUser) // /home/deploy in the host
	if err := os.MkdirAll(home, 0o755); err != nil {
		return err
	}
	if err := os.Chown(home, uid, gid); err != nil {
		return err
	}
	pwField := "*"
	if h.Spec.SudoPassword != "" {
		if pwField, err = passwordHash(h.Spec.SudoPassword); err != nil {
			return err
		}
	}
	etc := filepath.Join(h.Dir, "etc")
	files := []struct {
		name string
		data string
		perm os.FileMode
	}{
		{"passwd", plainRootShell(withoutEntry(passwd, DeployUser)) + fmt.Sprintf("%s:x:%d:%d:skiff lab deploy user:/home/%s:/bin/sh\n", DeployUser, uid, gid, DeployUser), 0o644},
		{"group", withoutEntry(group, DeployUser) + fmt.Sprintf("%s:x:%d:\n", DeployUser, gid), 0o644},
		{"shadow", unlockRoot(withoutEntry(shadow, DeployUser)) + DeployUser + ":" + pwField + ":19000:0:99999:7:::\n", 0o640},
		{"sudoers", h.sudoers(), 0o440},
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(etc, f.name), []byte(f.data), f.perm); err != nil {
			return err
		}
	}
	return nil
}

func (h *Host) sudoers() string {
	lines := []string{
		"# sudoers of skiff lab host " + h.Name + " (rewritten at every start)",
		"Defaults env_reset",
		"Defaults lecture=never",
		`Defaults secure_path="` + HostPath + `"`,
		"root ALL=(ALL:ALL) ALL",
	}
	switch {
	case h.Spec.NoSudo:
	case h.Spec.SudoPassword != "":
		lines = append(lines, DeployUser+" ALL=(ALL:ALL) ALL")
	default:
		lines = append(lines, DeployUser+" ALL=(ALL:ALL) NOPASSWD: ALL")
	}
	return strings.Join(append(lines, ""), "\n")
}

// writeNixConf writes the host's /etc/nix: the machine's files, with nix.conf ending in
// "sandbox = false", "build-users-group =" and the host's ExtraNixConf. A host builds
// (skiff run on the host, a build host) without build users: the nixbld accounts are
// the machine's, shared by every store here, and Nix kills every process of a build
// user before it builds with it, so two stores building at once would kill each
// other's builders. Builds run as root (the host's nix-daemon for other users).
func (h *Host) writeNixConf() error {
	dir := filepath.Join(h.Dir, "etc", "nix")
	if _, err := os.Stat("/etc/nix"); err == nil {
		if err := copyTree("/etc/nix", dir, nil); err != nil {
			return fmt.Errorf("copy /etc/nix: %w", err)
		}
	}
	conf, err := os.ReadFile("/etc/nix/nix.conf")
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var b strings.Builder
	b.Write(conf)
	if len(conf) > 0 && !bytes.HasSuffix(conf, []byte("\n")) {
		b.WriteByte('\n')
	}
	b.WriteString("\n# skiff lab host " + h.Name + "\nsandbox = false\nbuild-users-group =\n")
	if h.Spec.ExtraNixConf != "" {
		b.WriteString(h.Spec.ExtraNixConf)
		if !strings.HasSuffix(h.Spec.ExtraNixConf, "\n") {
			b.WriteByte('\n')
		}
	}
	return writeFileAtomic(filepath.Join(dir, "nix.conf"), []byte(b.String()), 0o644)
}

// sshKeygen creates an ed25519 key pair without a passphrase at path and path.pub.
func sshKeygen(path, comment string) error {
	keygen, err := tool("ssh-keygen")
	if err != nil {
		return err
	}
	out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ssh-keygen %s: %w: %s", path, err, lastLines(out, 3))
	}
	return nil
}

// publicKeyLine returns "TYPE BASE64" of an OpenSSH public key file (no comment).
func publicKeyLine(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return "", fmt.Errorf("%s: not an OpenSSH public key", path)
	}
	return f[0] + " " + f[1], nil
}
