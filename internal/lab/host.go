package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Host is one lab host. Name, Addr and Dir do not change; the methods are safe for
// concurrent use.
type Host struct {
	Name string // as in ssh_config
	Addr string // 127.0.S.x; sshd listens on port 22
	Dir  string // DIR/hosts/NAME: nix/ (the host's /nix), etc/, bin/ (shims), logs
	Spec HostSpec

	lab *Lab

	mu         sync.Mutex
	sshd       *exec.Cmd
	sshdDone   chan struct{}
	keeper     int
	mntNS      string
	storeMount string
}

// startTimeout bounds a host start when ctx has no deadline (a boot may activate a
// slow system first).
const startTimeout = 60 * time.Second

func (h *Host) shimDir() string   { return filepath.Join(h.Dir, "bin") }
func (h *Host) storeDir() string  { return filepath.Join(h.Dir, "nix") }
func (h *Host) setupPath() string { return filepath.Join(h.lab.libDir, "setup.sh") }

// SSHDLog returns the path of the host's sshd log.
func (h *Host) SSHDLog() string { return filepath.Join(h.Dir, "sshd.log") }

// BootLog returns the path of the log of the host's boots (activation at Start).
func (h *Host) BootLog() string { return filepath.Join(h.Dir, "boot.log") }

func (h *Host) state() HostState {
	h.mu.Lock()
	defer h.mu.Unlock()
	hs := HostState{Name: h.Name, Addr: h.Addr, Dir: h.Dir, KeeperPID: h.keeper, MountNS: h.mntNS,
		StoreMount: h.storeMount, StoreSize: h.Spec.StoreSize}
	if h.sshd != nil {
		hs.PID = h.sshd.Process.Pid
	}
	return hs
}

// Start boots the host: a new mount namespace, a fresh /run, the boot default (or the
// system profile) activated and its units started, then sshd; it returns once sshd
// accepts connections. Starting a running host is an error.
func (h *Host) Start(ctx context.Context) error {
	if err := h.start(ctx); err != nil {
		if !errors.Is(err, errRunning) {
			_ = h.stop(false)
		}
		return fmt.Errorf("start %s: %w", h.Name, err)
	}
	return h.lab.saveState()
}

var errRunning = errors.New("already running")

func (h *Host) start(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if id, err := statID(h.storeDir()); err == nil && len(storeProcs(id)) > 0 {
		return errRunning
	}
	if h.Spec.StoreSize > 0 && h.storeMount == "" {
		if err := mountStore(h.storeDir(), h.Spec.StoreSize); err != nil {
			return fmt.Errorf("mount store: %w", err)
		}
		h.storeMount = h.storeDir()
	}
	for _, name := range shims {
		if err := installAsset(name, filepath.Join(h.shimDir(), name)); err != nil {
			return err
		}
	}
	if h.Spec.Darwin {
		if err := h.installDarwinShims(); err != nil {
			return err
		}
	}
	unshare, err := tool("unshare")
	if err != nil {
		return err
	}
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "/bin/sh", h.setupPath(), h.Dir, h.Name, "boot")
	if err := h.spawnSSHD(ctx, cmd); err != nil {
		return err
	}
	keeper, err := os.ReadFile(filepath.Join(h.Dir, "keeper.pid"))
	if err != nil {
		return fmt.Errorf("read keeper pid: %w", err)
	}
	h.keeper, _ = strconv.Atoi(strings.TrimSpace(string(keeper)))
	if h.mntNS, err = mountNS(h.sshd.Process.Pid); err != nil {
		return fmt.Errorf("read mount namespace: %w", err)
	}
	return nil
}

// spawnSSHD starts cmd (which becomes the host's sshd) detached from this process, and
// waits until the host's address answers with an SSH banner.
func (h *Host) spawnSSHD(ctx context.Context, cmd *exec.Cmd) error {
	logf, err := os.OpenFile(filepath.Join(h.Dir, "setup.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdin = nil
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LC_ALL=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	h.sshd, h.sshdDone = cmd, done

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	for {
		if sshBanner(h.Addr) {
			// sshd is up, and so is the namespace: setup.sh has exec'd sshd.
			return nil
		}
		select {
		case <-done:
			h.sshd = nil
			return fmt.Errorf("sshd exited: %s", firstNonEmpty(fileTail(filepath.Join(h.Dir, "setup.log"), 5), fileTail(h.SSHDLog(), 5)))
		case <-ctx.Done():
			return fmt.Errorf("waiting for sshd on %s: %w (see %s)", h.Addr, ctx.Err(), h.BootLog())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return "no log"
}

// sshBanner reports whether addr:22 accepts a connection and greets with "SSH-".
func sshBanner(addr string) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, "22"), 250*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	return err == nil && string(buf) == "SSH-"
}

// Stop ends the host: sshd, its sessions, and everything else running in it. The /run
// of the host is lost; its /nix (and a size-limited store's tmpfs) stays for the next
// Start. Stopping a stopped host does nothing.
func (h *Host) Stop() error {
	if err := h.stop(false); err != nil {
		return err
	}
	return h.lab.saveState()
}

func (h *Host) stop(unmount bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	hs := HostState{Name: h.Name, Dir: h.Dir, KeeperPID: h.keeper, MountNS: h.mntNS, StoreMount: h.storeMount}
	if h.sshd != nil {
		hs.PID = h.sshd.Process.Pid
	}
	err := hs.stop(unmount)
	if h.sshd != nil {
		select {
		case <-h.sshdDone:
		case <-time.After(5 * time.Second):
		}
	}
	h.sshd, h.sshdDone, h.keeper, h.mntNS = nil, nil, 0, ""
	h.storeMount = hs.StoreMount
	return err
}

// StopSSHD stops only the host's sshd listener: new connections are refused, while the
// host's /run, its other processes and open SSH sessions stay. StartSSHD undoes it.
func (h *Host) StopSSHD() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sshd == nil {
		return nil
	}
	if err := h.sshd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop sshd of %s: %w", h.Name, err)
	}
	select {
	case <-h.sshdDone:
	case <-time.After(5 * time.Second):
		_ = h.sshd.Process.Kill()
		<-h.sshdDone
	}
	h.sshd, h.sshdDone = nil, nil
	return nil
}

// StartSSHD starts the host's sshd listener again inside the running host (after
// StopSSHD).
func (h *Host) StartSSHD(ctx context.Context) error {
	err := func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.sshd != nil {
			return errors.New("sshd is running")
		}
		if !alive(h.keeper, h.mntNS) {
			return errors.New("host is not running")
		}
		nsenter, err := tool("nsenter")
		if err != nil {
			return err
		}
		cmd := exec.Command(nsenter, "--mount", "--target", strconv.Itoa(h.keeper), "--", "/bin/sh", h.setupPath(), h.Dir, h.Name, "sshd")
		return h.spawnSSHD(ctx, cmd)
	}()
	if err != nil {
		return fmt.Errorf("start sshd of %s: %w", h.Name, err)
	}
	return h.lab.saveState()
}

// nsPID returns a process in the host's mount namespace to enter.
func (h *Host) nsPID() (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if alive(h.keeper, h.mntNS) {
		return h.keeper, nil
	}
	if h.sshd != nil && alive(h.sshd.Process.Pid, h.mntNS) {
		return h.sshd.Process.Pid, nil
	}
	return 0, errors.New("host is not running")
}

// ExecError is a failed Host.Exec: the command, its exit code (-1 when it did not
// exit normally) and the tail of its standard error.
type ExecError struct {
	Host     string
	Args     []string
	ExitCode int
	Stdout   string
	Stderr   string
	Err      error
}

func (e *ExecError) Error() string {
	msg := fmt.Sprintf("exec %s on %s: %v", strings.Join(e.Args, " "), e.Host, e.Err)
	if tail := lastLines([]byte(e.Stderr), 5); tail != "" {
		msg += ": " + tail
	}
	return msg
}

func (e *ExecError) Unwrap() error { return e.Err }

// Exec runs argv as root inside the host's mount namespace (nsenter, no SSH), with the
// host's PATH (shims first), and returns its standard output. A non-zero exit is an
// *ExecError that also carries the output.
func (h *Host) Exec(ctx context.Context, args ...string) (string, error) {
	return h.ExecInput(ctx, nil, args...)
}

// ExecInput is Exec with stdin as the command's standard input.
func (h *Host) ExecInput(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	if len(args) == 0 {
		return "", fmt.Errorf("exec on %s: no command", h.Name)
	}
	pid, err := h.nsPID()
	if err != nil {
		return "", &ExecError{Host: h.Name, Args: args, ExitCode: -1, Err: err}
	}
	nsenter, err := tool("nsenter")
	if err != nil {
		return "", &ExecError{Host: h.Name, Args: args, ExitCode: -1, Err: err}
	}
	argv := append([]string{"--mount", "--target", strconv.Itoa(pid), "--"}, args...)
	cmd := exec.CommandContext(ctx, nsenter, argv...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=" + HostPath, "HOME=/root", "USER=root", "LC_ALL=C"}
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return stdout.String(), &ExecError{Host: h.Name, Args: args, ExitCode: code, Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
	}
	return stdout.String(), nil
}

// WriteFile writes data to path inside the host (e.g. a unit's state under
// /run/lab-systemd/units), creating or truncating it.
func (h *Host) WriteFile(ctx context.Context, path string, data []byte) error {
	_, err := h.ExecInput(ctx, bytes.NewReader(data), "/bin/sh", "-c", `cat >"$1"`, "sh", path)
	return err
}

// Logins counts the successful public key logins of user in the host's sshd log
// (across restarts).
func (h *Host) Logins(user string) int {
	b, err := os.ReadFile(h.SSHDLog())
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte("Accepted publickey for "+user+" from "))
}

// SetAuthorizedKeys replaces the keys that may log in as user (the host's
// /etc/ssh/authorized_keys.d/USER; an empty list locks the user out). It works whether
// the host runs or not, like a console would.
func (h *Host) SetAuthorizedKeys(user string, keys []string) error {
	if user == "" || strings.ContainsAny(user, "/\n") || strings.HasPrefix(user, ".") {
		return fmt.Errorf("set authorized keys on %s: invalid user %q", h.Name, user)
	}
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(strings.TrimSpace(k))
		b.WriteByte('\n')
	}
	path := filepath.Join(h.Dir, "etc", "ssh", "authorized_keys.d", user)
	if err := writeFileAtomic(path, []byte(b.String()), 0o444); err != nil {
		return fmt.Errorf("set authorized keys of %s on %s: %w", user, h.Name, err)
	}
	return nil
}

// Running reports whether the host's sshd listens.
func (h *Host) Running() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sshd != nil
}
