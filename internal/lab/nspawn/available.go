package nspawn

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Available returns nil when this machine can run Bookworm hosts, else what is
// missing (see Release.Available).
func Available(cache string) error { return Bookworm.Available(cache) }

// Available returns nil when this machine can run hosts of release r, else
// what is missing. cache is Options.Cache: debootstrap is needed only while
// the tree of r's current recipe is not built there.
func (r Release) Available(cache string) error {
	if runtime.GOOS != "linux" {
		return errors.New("nspawn: needs Linux, this is " + runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return errors.New("nspawn: needs root (systemd-nspawn, overlay mounts)")
	}
	for _, name := range []string{"systemd-nspawn", "unshare", "nsenter", "mount", "chroot", "ssh", "ssh-keygen"} {
		if _, err := tool(name); err != nil {
			return err
		}
	}
	if cache == "" {
		cache = DefaultCache
	}
	if _, err := os.Stat(filepath.Join(cache, recipeHash(r)) + ".complete"); err != nil {
		if _, err := tool("debootstrap"); err != nil {
			return fmt.Errorf("%w; the tree is not built in %s yet", err, cache)
		}
	}
	fs, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return fmt.Errorf("nspawn: %w", err)
	}
	if !strings.Contains(string(fs), "\toverlay\n") {
		// The module may load on the first mount.
		if _, err := os.Stat("/sys/module/overlay"); err != nil && !moduleFile("overlay") {
			return errors.New("nspawn: the kernel has no overlayfs (not in /proc/filesystems, no overlay module)")
		}
	}
	return nil
}

func moduleFile(name string) bool {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return false
	}
	rel := strings.TrimSpace(string(b))
	found := false
	_ = filepath.WalkDir(filepath.Join("/lib/modules", rel, "kernel", "fs", name), func(string, os.DirEntry, error) error {
		found = true
		return filepath.SkipAll
	})
	return found
}
