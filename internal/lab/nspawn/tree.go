package nspawn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DefaultCache is where Tree keeps built trees when Options.Cache is empty.
const DefaultCache = "/var/cache/skiff-nspawn"

// DefaultMirror is the Debian mirror debootstrap uses when Options.Mirror is
// empty.
const DefaultMirror = "http://deb.debian.org/debian"

// Release is a Debian release the hosts (and a Deployer) can run: each has a
// tree of its own, built by the same recipe.
type Release struct {
	// Suite is debootstrap's name of the release.
	Suite string
	// About names what the release brings, for messages and docs.
	About string
	// Unified gives the containers a cgroup v2 hierarchy only
	// (SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1): systemd 256 and newer refuse to
	// boot on the v1 hierarchies a hybrid machine would hand them.
	Unified bool
}

var (
	// Bookworm is Debian 12: systemd 252, OpenSSH 9.2, Nix 2.8 (the default).
	Bookworm = Release{Suite: "bookworm", About: "Debian 12: systemd 252, OpenSSH 9.2, Nix 2.8"}
	// Trixie is Debian 13: systemd 257, OpenSSH 10.0, Nix 2.26.
	Trixie = Release{Suite: "trixie", About: "Debian 13: systemd 257, OpenSSH 10.0, Nix 2.26", Unified: true}
)

// orDefault is r, or Bookworm for the zero Release.
func (r Release) orDefault() Release {
	if r.Suite == "" {
		return Bookworm
	}
	return r
}

// debootstrapPackages are installed by debootstrap itself; nix-bin is not among
// them, because debootstrap's resolver cannot pull in its dependencies.
var debootstrapPackages = []string{"systemd", "systemd-sysv", "dbus", "openssh-server"}

// aptPackages are installed with apt-get inside the tree afterwards.
var aptPackages = []string{"nix-bin", "sudo"}

// customize turns a fresh tree ($1) into the hosts' shared root: no host keys,
// no machine id, no gettys or timers, a unit that makes the host key at first
// boot, the boot-default activation, Nix settings for hosts that only receive
// closures, and a user deploy (uid 1000, no password, no shell start-up files)
// whose sudo asks for none, as a NixOS host's deploy user with
// security.sudo.wheelNeedsPassword = false.
const customize = `set -eu
T=$1
chroot "$T" apt-get clean
rm -rf "$T"/var/lib/apt/lists/* "$T"/etc/ssh/ssh_host_*
: >"$T/etc/machine-id"
rm -f "$T/etc/resolv.conf"
chroot "$T" useradd --uid 1000 --user-group --no-create-home --home-dir /home/deploy --shell /bin/sh --password '*' deploy
printf 'deploy ALL=(ALL) NOPASSWD: ALL\n' >"$T/etc/sudoers.d/deploy"
chmod 0440 "$T/etc/sudoers.d/deploy"
S=$T/etc/systemd/system
rm -f "$S"/getty.target.wants/* "$S"/timers.target.wants/* "$S"/multi-user.target.wants/e2scrub_reap.service "$S"/sysinit.target.wants/systemd-pstore.service
ln -sfn /dev/null "$S/console-getty.service"
cat >"$S/ssh-keygen.service" <<'UNIT'
[Unit]
Description=Generate this host's SSH host key
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -C "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=ssh.service
UNIT
mkdir -p "$S/ssh.service.wants"
ln -sfn ../ssh-keygen.service "$S/ssh.service.wants/ssh-keygen.service"
cat >"$S/skiff-boot.service" <<'UNIT'
[Unit]
Description=Activate the boot default system (/nix/var/lab/boot-default)
After=ssh.service
ConditionPathExists=/nix/var/lab/boot-default

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'd=$(readlink -f /nix/var/lab/boot-default) && ln -sfn "$d" /run/booted-system && exec "$d/bin/switch-to-configuration" test'

[Install]
WantedBy=multi-user.target
UNIT
ln -sfn ../skiff-boot.service "$S/multi-user.target.wants/skiff-boot.service"
mkdir -p "$T/etc/nix" "$T/nix"
cat >"$T/etc/nix/nix.conf" <<'CONF'
build-users-group =
sandbox = false
substituters =
experimental-features = nix-command flakes
CONF
cat >"$T/etc/tmpfiles.d/nix.conf" <<'CONF'
d /nix/store 1775 root root -
d /nix/var/nix/profiles 0755 root root -
d /nix/var/nix/gcroots 0755 root root -
CONF
`

// recipeHash names a tree of release r: it changes whenever anything that goes
// into the tree changes.
func recipeHash(r Release) string {
	h := sha256.New()
	fmt.Fprintf(h, "v1\n%s\n%s\n%s\n%s", r.orDefault().Suite, strings.Join(debootstrapPackages, ","), strings.Join(aptPackages, ","), customize)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Tree returns the shared root filesystem of release r (the zero Release is
// Bookworm), CACHE/HASH, building it first when it is missing (about a minute
// and 300 MiB; CACHE/HASH.complete marks a finished build). Concurrent callers
// wait for one build. logf, when not nil, hears about a build.
func Tree(ctx context.Context, r Release, cache, mirror string, logf func(string, ...any)) (string, error) {
	r = r.orDefault()
	if cache == "" {
		cache = DefaultCache
	}
	if mirror == "" {
		mirror = DefaultMirror
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	dir := filepath.Join(cache, recipeHash(r))
	done := dir + ".complete"
	if _, err := os.Stat(done); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("tree cache: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("tree cache: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("tree cache: lock: %w", err)
	}
	if _, err := os.Stat(done); err == nil {
		return dir, nil // built by another process meanwhile
	}
	start := time.Now()
	logf("nspawn: building the %s tree in %s (debootstrap, once per recipe)", r.Suite, dir)
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", fmt.Errorf("tree cache: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("tree cache: %w", err)
	}
	debootstrap, err := tool("debootstrap")
	if err != nil {
		return "", err
	}
	steps := [][]string{
		{debootstrap, "--variant=minbase", "--include=" + strings.Join(debootstrapPackages, ","), r.Suite, tmp, mirror},
		{"sh", "-c", `cp /etc/resolv.conf "$1/etc/resolv.conf" 2>/dev/null || true`, "sh", tmp},
		append([]string{"chroot", tmp, "env", "DEBIAN_FRONTEND=noninteractive", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
			"apt-get", "install", "-y", "-q", "--no-install-recommends"}, aptPackages...),
		{"sh", "-c", customize, "sh", tmp},
	}
	for _, argv := range steps {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("build the %s tree: %s: %w\n%s", r.Suite, argv[0], err, lastLines(out, 15))
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("tree cache: %w", err)
	}
	if err := os.WriteFile(done, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("tree cache: %w", err)
	}
	logf("nspawn: built the tree in %s", time.Since(start).Round(time.Second))
	return dir, nil
}

// lastLines is the end of a command's output, for error messages.
func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tool finds a command in PATH or in the usual system directories (a test's
// PATH may lack the sbin directories).
func tool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("nspawn: %s not found in PATH or the system directories (apt-get install systemd-container debootstrap)", name)
}
