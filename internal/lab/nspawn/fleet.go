package nspawn

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// HostSpec describes one host.
type HostSpec struct {
	// Name is the host's name in ssh_config, its hostname and its directory.
	Name string
	// NixSize > 0 gives the host a tmpfs /nix of that many bytes (emptied by a
	// reboot), to run out of space for real.
	NixSize int64
}

// Options configure Start.
type Options struct {
	// Dir holds the fleet: id_ed25519, ssh_config, known_hosts, hosts/NAME.
	Dir string
	// Release is the Debian release the hosts run; the zero Release is
	// Bookworm.
	Release Release
	// Cache holds the shared tree; "" means DefaultCache.
	Cache string
	// Mirror is the Debian mirror for a tree build; "" means DefaultMirror.
	Mirror string
	// Hosts to start.
	Hosts []HostSpec
	// Logf, when set, hears about slow steps (a tree build).
	Logf func(string, ...any)
}

// Fleet is a set of running hosts.
type Fleet struct {
	dir     string
	tree    string
	release Release
	pubKey  string
	hosts   []*Host
	byName  map[string]*Host
	mu      sync.Mutex // guards known_hosts
}

// Host is one container.
type Host struct {
	Name string
	Port int    // sshd's port on 127.0.0.1
	Dir  string // hosts/NAME: upper, work, merged, console.log
	Spec HostSpec

	f    *Fleet
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has ended
	err  error         // cmd's exit, once done is closed
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

// Start boots every host of opts in parallel (building the tree first when
// needed) and returns once each accepts SSH logins. On error, everything it
// started is stopped again.
func Start(ctx context.Context, opts Options) (*Fleet, error) {
	opts.Release = opts.Release.orDefault()
	if err := opts.Release.Available(opts.Cache); err != nil {
		return nil, err
	}
	if len(opts.Hosts) == 0 {
		return nil, errors.New("nspawn: no hosts")
	}
	seen := map[string]bool{}
	for _, h := range opts.Hosts {
		if !nameRE.MatchString(h.Name) || seen[h.Name] {
			return nil, fmt.Errorf("nspawn: invalid or repeated host name %q", h.Name)
		}
		seen[h.Name] = true
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil || opts.Dir == "" {
		return nil, fmt.Errorf("nspawn: invalid directory %q", opts.Dir)
	}
	tree, err := Tree(ctx, opts.Release, opts.Cache, opts.Mirror, opts.Logf)
	if err != nil {
		return nil, err
	}
	if err := raiseInotify(); err != nil && opts.Logf != nil {
		opts.Logf("nspawn: %v (the hosts' systemd may run out of inotify instances)", err)
	}
	f := &Fleet{dir: dir, tree: tree, release: opts.Release, byName: map[string]*Host{}}
	if err := f.setup(opts.Hosts); err != nil {
		return nil, fmt.Errorf("nspawn: set up %s: %w", dir, err)
	}
	errs := make([]error, len(f.hosts))
	var wg sync.WaitGroup
	for i, h := range f.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.Start(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = f.Stop()
		return nil, err
	}
	return f, nil
}

// inotifyInstances is how many inotify instances the containers need
// between them. They all run as this machine's root (no user namespace),
// and each one's systemd, journald, logind and dbus take several: with 11
// hosts, Debian's default of 128 ran out ("Too many open files", a host
// booted with failed units).
const inotifyInstances = 1024

// raiseInotify raises root's inotify instance limit to inotifyInstances
// when it is lower; it never lowers it.
func raiseInotify() error {
	const p = "/proc/sys/fs/inotify/max_user_instances"
	b, err := os.ReadFile(p)
	if err != nil {
		return nil // no such limit here
	}
	if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= inotifyInstances {
		return nil
	}
	if err := os.WriteFile(p, []byte(strconv.Itoa(inotifyInstances)+"\n"), 0o644); err != nil {
		return fmt.Errorf("cannot raise fs.inotify.max_user_instances to %d: %w", inotifyInstances, err)
	}
	return nil
}

// setup writes the client key, ssh_config, an empty known_hosts, and every
// host's upper layer: hostname, sshd's port and address, the key authorized for root and for deploy.
func (f *Fleet) setup(specs []HostSpec) error {
	if err := os.MkdirAll(filepath.Join(f.dir, "hosts"), 0o755); err != nil {
		return err
	}
	key := f.IdentityFile()
	if _, err := os.Stat(key); os.IsNotExist(err) {
		out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "skiff-nspawn", "-f", key).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ssh-keygen: %w: %s", err, out)
		}
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		return err
	}
	f.pubKey = strings.TrimSpace(string(pub))
	ports, err := freePorts(len(specs))
	if err != nil {
		return err
	}
	var config strings.Builder
	config.WriteString("# skiff systemd-nspawn hosts in " + f.dir + ": use with ssh -F (and skiff -F)\n")
	for i, spec := range specs {
		h := &Host{Name: spec.Name, Port: ports[i], Dir: filepath.Join(f.dir, "hosts", spec.Name), Spec: spec, f: f}
		f.hosts = append(f.hosts, h)
		f.byName[h.Name] = h
		up := h.upper()
		files := map[string]string{
			"etc/hostname": h.Name + "\n",
			"etc/ssh/sshd_config.d/10-skiff-host.conf": fmt.Sprintf("# written by skiff's test harness: this host's own address\nPort %d\nListenAddress 127.0.0.1\nHostKey /etc/ssh/ssh_host_ed25519_key\n", h.Port),
			"root/.ssh/authorized_keys":                f.pubKey + "\n",
		}
		for name, content := range files {
			p := filepath.Join(up, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				return err
			}
		}
		if err := os.Chmod(filepath.Join(up, "root", ".ssh"), 0o700); err != nil {
			return err
		}
		if err := os.Chmod(filepath.Join(up, "root"), 0o700); err != nil {
			return err
		}
		if err := deployHome(up, f.pubKey); err != nil {
			return err
		}
		for _, d := range []string{h.work(), h.merged()} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		fmt.Fprintf(&config, "\nHost %s\n  HostName 127.0.0.1\n  Port %d\n  User root\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n  GlobalKnownHostsFile /dev/null\n  BatchMode yes\n",
			h.Name, h.Port, key, f.KnownHosts())
	}
	if err := os.WriteFile(f.KnownHosts(), nil, 0o644); err != nil {
		return err
	}
	return os.WriteFile(f.SSHConfig(), []byte(config.String()), 0o644)
}

// deployUID is the tree's user deploy (customize), whose sudo asks for no
// password.
const deployUID = 1000

// deployHome writes the home of the user deploy into a host's upper layer:
// the client key authorized, owned by deploy as sshd wants it, and nothing
// else (no shell start-up files).
func deployHome(up, pubKey string) error {
	home := filepath.Join(up, "home", "deploy")
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		return err
	}
	keys := filepath.Join(home, ".ssh", "authorized_keys")
	if err := os.WriteFile(keys, []byte(pubKey+"\n"), 0o600); err != nil {
		return err
	}
	for _, p := range []string{home, filepath.Join(home, ".ssh"), keys} {
		if err := os.Chown(p, deployUID, deployUID); err != nil {
			return err
		}
	}
	return os.Chmod(home, 0o755)
}

// freePorts picks n distinct free TCP ports on 127.0.0.1 below the usual
// ephemeral range (32768 and up), so that no outgoing connection takes a
// host's port while it reboots.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	start := 20000 + rand.IntN(10000)
	for p := start; len(ports) < n && p < 32768; p++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		ports = append(ports, p)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("pick ports: only %d free from %d to 32767", len(ports), start)
	}
	return ports, nil
}

func (h *Host) upper() string  { return filepath.Join(h.Dir, "upper") }
func (h *Host) work() string   { return filepath.Join(h.Dir, "work") }
func (h *Host) merged() string { return filepath.Join(h.Dir, "merged") }

// ConsoleLog is the host's console output (systemd's boot messages).
func (h *Host) ConsoleLog() string { return filepath.Join(h.Dir, "console.log") }

// bootScript moves itself into the host's own cgroups, mounts the overlay in
// the (private) mount namespace it runs in and becomes systemd-nspawn.
// Arguments: CGROUP CGROUP LOWER UPPER WORK MERGED NSPAWN-ARGS... (a CGROUP
// may be empty). systemd-nspawn --keep-unit makes its payload and
// supervisor cgroups under the cgroup it runs in: without a cgroup of its
// own, every host would share them (and kill each other's units).
const bootScript = `set -e
for cg in "$1" "$2"; do
	if [ -n "$cg" ]; then
		mkdir -p "$cg"
		echo $$ >"$cg/cgroup.procs"
	fi
done
mount -t overlay overlay -o "lowerdir=$3,upperdir=$4,workdir=$5" "$6"
shift 6
exec "$@"`

// cgroups are the host's own cgroups in the machine's name=systemd (v1) and
// unified (v2) hierarchies, whichever exist.
func (h *Host) cgroups() [2]string {
	id := h.machine()
	var cg [2]string
	if _, err := os.Stat("/sys/fs/cgroup/systemd/cgroup.procs"); err == nil {
		cg[0] = "/sys/fs/cgroup/systemd/skiff-nspawn/" + id
	}
	switch {
	case fileExists("/sys/fs/cgroup/unified/cgroup.procs"):
		cg[1] = "/sys/fs/cgroup/unified/skiff-nspawn/" + id
	case fileExists("/sys/fs/cgroup/cgroup.procs") && cg[0] == "":
		cg[1] = "/sys/fs/cgroup/skiff-nspawn/" + id
	}
	return cg
}

// machine is the host's machine name for systemd-nspawn, unique to this
// fleet (nspawn keeps per-machine state in /run/systemd/nspawn/propagate).
func (h *Host) machine() string {
	sum := sha256.Sum256([]byte(h.Dir))
	return h.Name + "-" + hex.EncodeToString(sum[:4])
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// removeCgroups removes the host's cgroups once nothing runs in them
// (children first).
func (h *Host) removeCgroups() {
	for _, cg := range h.cgroups() {
		if cg == "" {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(cg, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = syscall.Rmdir(dirs[i])
		}
	}
}

// Start boots the host (again) and returns once it accepts an SSH login as
// root and systemd has finished booting.
func (h *Host) Start(ctx context.Context) error {
	h.mu.Lock()
	if h.cmd != nil {
		select {
		case <-h.done:
		default:
			h.mu.Unlock()
			return fmt.Errorf("nspawn: %s is running already", h.Name)
		}
	}
	nspawn, err := tool("systemd-nspawn")
	if err != nil {
		h.mu.Unlock()
		return err
	}
	h.removeCgroups() // of a previous boot
	cg := h.cgroups()
	args := []string{"unshare", "--mount", "--propagation", "private", "sh", "-c", bootScript, "sh",
		cg[0], cg[1], h.f.tree, h.upper(), h.work(), h.merged(),
		nspawn, "--quiet", "--boot", "--register=no", "--keep-unit", "--directory=" + h.merged(),
		"--machine=" + h.machine(), "--hostname=" + h.Name, "--console=read-only"}
	if h.Spec.NixSize > 0 {
		args = append(args, fmt.Sprintf("--tmpfs=/nix:mode=0755,size=%d", h.Spec.NixSize))
	}
	console, err := os.OpenFile(h.ConsoleLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		h.mu.Unlock()
		return err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = console, console
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_LOG_COLOR=0"}
	if h.f.release.Unified {
		cmd.Env = append(cmd.Env, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1")
	}
	// A test binary that dies (a panic, go test's timeout) powers its
	// hosts off instead of leaving them running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		console.Close()
		h.mu.Unlock()
		return fmt.Errorf("nspawn: start %s: %w", h.Name, err)
	}
	done := make(chan struct{})
	h.cmd, h.done, h.err = cmd, done, nil
	go func() {
		err := cmd.Wait()
		console.Close()
		h.removeCgroups()
		h.mu.Lock()
		h.err = err
		h.mu.Unlock()
		close(done)
	}()
	h.mu.Unlock()
	if err := h.waitReady(ctx, done); err != nil {
		_ = h.Stop()
		return fmt.Errorf("nspawn: boot %s: %w\nconsole (%s):\n%s", h.Name, err, h.ConsoleLog(), fileTail(h.ConsoleLog(), 20))
	}
	return nil
}

// waitReady waits for the host key, records it, then for an SSH login that
// sees systemd done booting.
func (h *Host) waitReady(ctx context.Context, done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	pub := filepath.Join(h.upper(), "etc", "ssh", "ssh_host_ed25519_key.pub")
	var lastErr error
	for {
		select {
		case <-done:
			return fmt.Errorf("systemd-nspawn ended: %v", h.exitErr())
		case <-ctx.Done():
			return fmt.Errorf("not ready: %v (last: %v)", ctx.Err(), lastErr)
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := os.Stat(pub); err != nil {
			lastErr = errors.New("no host key yet")
			continue
		}
		if err := h.f.recordHostKeys(); err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, "ssh", "-F", h.f.SSHConfig(), "-o", "ConnectTimeout=5", h.Name, "systemctl is-system-running --wait >/dev/null 2>&1; systemctl is-system-running")
		out, err := cmd.CombinedOutput()
		if err == nil || strings.Contains(string(out), "degraded") {
			return nil
		}
		lastErr = fmt.Errorf("ssh: %v: %s", err, strings.TrimSpace(string(out)))
	}
}

func (h *Host) exitErr() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		return errors.New("exit status 0")
	}
	return h.err
}

// recordHostKeys writes known_hosts with the key of every host that has one.
func (f *Fleet) recordHostKeys() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var lines []string
	for _, h := range f.hosts {
		b, err := os.ReadFile(filepath.Join(h.upper(), "etc", "ssh", "ssh_host_ed25519_key.pub"))
		if err != nil {
			continue
		}
		fields := strings.Fields(string(b))
		if len(fields) < 2 {
			continue
		}
		lines = append(lines, fmt.Sprintf("[127.0.0.1]:%d %s %s\n", h.Port, fields[0], fields[1]))
	}
	sort.Strings(lines)
	tmp := f.KnownHosts() + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "")), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, f.KnownHosts())
}

// Exited is closed when the host's nspawn process has ended (a reboot or
// poweroff inside the host, or Stop). It is nil before the first Start.
func (h *Host) Exited() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.done
}

// Stop powers the host off (SIGTERM to systemd-nspawn, which shuts the
// container down), kills it after a grace period, and waits for it.
func (h *Host) Stop() error {
	h.mu.Lock()
	cmd, done := h.cmd, h.done
	h.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	leader, _ := h.leader()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
	}
	if leader > 0 {
		_ = syscall.Kill(leader, syscall.SIGKILL) // ends the container's pid namespace
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("nspawn: %s: systemd-nspawn (pid %d) did not end", h.Name, cmd.Process.Pid)
	}
}

// leader is the container's PID 1 as the machine sees it: the child of
// systemd-nspawn that is pid 1 of its own pid namespace.
func (h *Host) leader() (int, error) {
	h.mu.Lock()
	cmd := h.cmd
	h.mu.Unlock()
	if cmd == nil {
		return 0, fmt.Errorf("nspawn: %s is not running", h.Name)
	}
	parent := cmd.Process.Pid
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		var ppid int
		nsInner := ""
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PPid:"); ok {
				ppid, _ = strconv.Atoi(strings.TrimSpace(v))
			}
			if v, ok := strings.CutPrefix(l, "NSpid:"); ok {
				f := strings.Fields(v)
				if len(f) > 1 {
					nsInner = f[len(f)-1]
				}
			}
		}
		if ppid == parent && nsInner == "1" {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("nspawn: %s: no container init under systemd-nspawn (pid %d)", h.Name, parent)
}

// ExecError is a failed Exec: the command's exit and its output.
type ExecError struct {
	Host   string
	Argv   []string
	Err    error
	Output string
}

func (e *ExecError) Error() string {
	return fmt.Sprintf("%s: %s: %v: %s", e.Host, strings.Join(e.Argv, " "), e.Err, strings.TrimSpace(e.Output))
}

func (e *ExecError) Unwrap() error { return e.Err }

// Exec runs argv inside the running host (all of its namespaces, its root, as
// root, PATH of a root login) and returns its standard output.
func (h *Host) Exec(ctx context.Context, argv ...string) (string, error) {
	leader, err := h.leader()
	if err != nil {
		return "", err
	}
	nsenter, err := tool("nsenter")
	if err != nil {
		return "", err
	}
	full := append([]string{"--target", strconv.Itoa(leader), "--mount", "--uts", "--ipc", "--net", "--pid", "--root", "--wd=/",
		"env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"}, argv...)
	cmd := exec.CommandContext(ctx, nsenter, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &ExecError{Host: h.Name, Argv: argv, Err: err, Output: stdout.String() + stderr.String()}
	}
	return stdout.String(), nil
}

// Stop stops every host; it is idempotent.
func (f *Fleet) Stop() error {
	errs := make([]error, len(f.hosts))
	var wg sync.WaitGroup
	for i, h := range f.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.Stop()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Dir is the fleet's directory.
func (f *Fleet) Dir() string { return f.dir }

// Release is the Debian release the hosts run.
func (f *Fleet) Release() Release { return f.release }

// Tree is the shared root filesystem the hosts boot from.
func (f *Fleet) Tree() string { return f.tree }

// SSHConfig is DIR/ssh_config, for ssh -F and skiff -F.
func (f *Fleet) SSHConfig() string { return filepath.Join(f.dir, "ssh_config") }

// KnownHosts is DIR/known_hosts: every host's own key at [127.0.0.1]:PORT.
func (f *Fleet) KnownHosts() string { return filepath.Join(f.dir, "known_hosts") }

// IdentityFile is the client's private key, authorized for root on every host.
func (f *Fleet) IdentityFile() string { return filepath.Join(f.dir, "id_ed25519") }

// PublicKey is the client's public key line.
func (f *Fleet) PublicKey() string { return f.pubKey }

// Host returns the host called name, or nil.
func (f *Fleet) Host(name string) *Host { return f.byName[name] }

// Hosts returns the hosts in the order of Options.Hosts.
func (f *Fleet) Hosts() []*Host { return append([]*Host(nil), f.hosts...) }

func fileTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return lastLines(b, n)
}
