package lab

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// fileID identifies a directory across mount namespaces: a bind mount of a directory
// has the same device and inode number as the directory itself.
type fileID struct{ dev, ino uint64 }

func statID(path string) (fileID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileID{}, err
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}, nil
}

// storeProcs returns the pids of the processes whose /nix is the directory store (a
// host's HOSTDIR/nix), or, when ns is not empty, that run in mount namespace ns: every
// process of that host, including those in namespaces derived from the host's
// (nix-daemon makes one) and commands entered with nsenter. /proc/PID/root resolves
// paths in the process's own mount namespace. Zombies and processes that exit
// meanwhile are skipped.
func storeProcs(store fileID) []int { return hostProcs(&store, "") }

func hostProcs(store *fileID, ns string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if store != nil {
			if id, err := statID("/proc/" + e.Name() + "/root/nix"); err == nil && id == *store {
				pids = append(pids, pid)
				continue
			}
		}
		if ns != "" {
			if got, err := mountNS(pid); err == nil && got == ns {
				pids = append(pids, pid)
			}
		}
	}
	sort.Ints(pids)
	return pids
}

// mountNS returns the mount namespace of pid ("mnt:[4026532177]").
func mountNS(pid int) (string, error) {
	return os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
}

// alive reports whether pid runs in the mount namespace ns (guards against pid reuse).
func alive(pid int, ns string) bool {
	if pid <= 0 {
		return false
	}
	got, err := mountNS(pid)
	return err == nil && got == ns
}

// killStoreProcs ends every process of the host whose store is at storeDir or that
// runs in its mount namespace ns (the recorded pids are among them): SIGTERM first,
// SIGKILL after grace, until none is left or the deadline passes.
func killStoreProcs(storeDir, ns string, grace time.Duration) error {
	var store *fileID
	if id, err := statID(storeDir); err == nil && hostStore(storeDir, id) {
		store = &id
	}
	if ns != "" {
		if own, err := mountNS(os.Getpid()); err != nil || own == ns {
			ns = "" // never this process's own namespace: that is the machine's
		}
	}
	// The namespace is looked at once: once its processes are gone, the
	// kernel may give its number to a namespace of another lab's host,
	// whose processes must not be touched. Processes that start later
	// are found by their store.
	var members []int
	if ns != "" {
		members = hostProcs(nil, ns)
	}
	start := time.Now()
	deadline := start.Add(grace + 10*time.Second)
	for {
		var pids []int
		if store != nil {
			pids = hostProcs(store, "")
		}
		for _, p := range members {
			if alive(p, ns) && !slices.Contains(pids, p) {
				pids = append(pids, p)
			}
		}
		if len(pids) == 0 {
			return nil
		}
		sig := syscall.SIGTERM
		if time.Since(start) > grace {
			sig = syscall.SIGKILL
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes still running after SIGKILL: %v", pids)
		}
		for _, p := range pids {
			_ = syscall.Kill(p, sig)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hostStore reports whether dir (with file id id) can be a lab host's
// store: an absolute path that is not the machine's own /nix (or /), so
// that a lost or empty lab directory can never make a stop sweep end every
// process of the machine.
func hostStore(dir string, id fileID) bool {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) == "/nix" {
		return false
	}
	for _, p := range []string{"/nix", "/"} {
		if other, err := statID(p); err == nil && other == id {
			return false
		}
	}
	return true
}

// isMountPoint reports whether path is a mount point in this process's namespace.
func isMountPoint(path string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	path = filepath.Clean(path)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountPath(fields[4]) == path {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMountPath undoes the octal escapes (\040 for space) of /proc/*/mountinfo.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountStore mounts a tmpfs of size bytes on dir (the host's store, in the machine's
// namespace, so it survives host restarts), unless one is already mounted there.
func mountStore(dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if mounted, err := isMountPoint(dir); err != nil {
		return err
	} else if mounted {
		return nil
	}
	return syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size))
}

// unmountStore unmounts dir if it is a mount point (lazily when it is busy).
func unmountStore(dir string) error {
	mounted, err := isMountPoint(dir)
	if err != nil || !mounted {
		return err
	}
	err = syscall.Unmount(dir, 0)
	if errors.Is(err, syscall.EBUSY) {
		err = syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	return err
}

// lastLines returns the last n lines of b, trimmed, for error messages.
func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// fileTail returns the last n lines of a file ("" when it cannot be read).
func fileTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return lastLines(b, n)
}
