package doctor

import (
	"context"
	"fmt"
	"strings"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/human"
	"github.com/skiffdeploy/skiff/internal/remote"
)

// Free space limits: below fail, a deploy of a NixOS system is unlikely to
// fit; below warn, it may not.
const (
	StoreFail = 256 << 20
	StoreWarn = 1 << 30
	BootFail  = 32 << 20
	BootWarn  = 100 << 20
)

func checkSudo(ctx context.Context, s *session) Finding {
	if !s.host.Sudo() {
		return ok("logged in as root: no sudo needed")
	}
	f, err := s.readFacts(ctx)
	if err != nil {
		return failed(err)
	}
	if !f.SudoTried || f.SudoCode != 0 {
		return failed(s.host.SudoError(f.SudoCode, f.SudoErr))
	}
	return ok("sudo -n works for %s", s.t.Target.Login())
}

// sudoOK reports whether privileged reads worked: as root, or through sudo.
func (s *session) sudoOK() bool {
	return !s.host.Sudo() || s.facts != nil && s.facts.SudoTried && s.facts.SudoCode == 0
}

// readFacts reads the facts the login's command printed (sshLogin).
func (s *session) readFacts(ctx context.Context) (*remote.Facts, error) {
	if s.facts == nil {
		l := s.sshLogin(ctx)
		if l.err != nil {
			return nil, l.err
		}
		f := remote.ParseFacts(l.stdout)
		s.facts = &f
	}
	return s.facts, nil
}

// gc is the skiff gc command a hint prints, keeping keep generations.
func (s *session) gc(keep int) remote.GCCommand {
	return remote.GCCommand{Flake: s.o.Flake, SSH: s.o.SSH, User: s.o.User, Keep: keep}
}

// sshCmd is the command a hint prints to run remote on the host by hand,
// with sudo first when priv and the login is not root.
func (s *session) sshCmd(priv bool, remote ...string) string {
	if priv {
		remote = s.host.PrivArgv(remote...)
	}
	return s.host.Conn.ByHand(remote...)
}

func checkNix(ctx context.Context, s *session) Finding {
	f, err := s.readFacts(ctx)
	if err != nil {
		return failed(err)
	}
	if f.NixVersion == "" {
		return Finding{Status: Fail, Class: fault.Nix, Detail: "nix-store is not on the PATH of non-interactive ssh sessions",
			Hint: "install Nix on the host (NixOS has it), or make nix-store and nix-env reachable on the PATH of non-interactive ssh sessions"}
	}
	return ok("%s", f.NixVersion)
}

func checkStore(ctx context.Context, s *session) Finding {
	f, err := s.readFacts(ctx)
	if err != nil {
		return failed(err)
	}
	if !s.sudoOK() {
		return skip("needs root")
	}
	if !f.StoreRW {
		return Finding{Status: Fail, Class: fault.Nix, Detail: "the Nix database (/nix/var/nix/db) cannot be written: " + strings.TrimSpace(f.StoreErr),
			Hint: fmt.Sprintf("check the filesystem holding /nix on the host (\"%s | grep /nix\"; remount it read-write, or free space)", s.sshCmd(false, "mount"))}
	}
	return ok("/nix/var/nix/db is writable")
}

func checkDisk(ctx context.Context, s *session) Finding {
	f, err := s.readFacts(ctx)
	if err != nil {
		return failed(err)
	}
	var parts []string
	worst := OK
	var hint string
	storeDev := ""
	for _, d := range f.Disks {
		if d.Free < 0 {
			parts = append(parts, d.Path+": free space unknown")
			continue
		}
		if d.Path == "/boot" && d.Device == storeDev {
			continue // the store's filesystem: already counted
		}
		if d.Path == "/nix/store" {
			storeDev = d.Device
		}
		failAt, warnAt := int64(StoreFail), int64(StoreWarn)
		h := s.gc(5).DiskHint(s.t.Name)
		if d.Path == "/boot" {
			failAt, warnAt = BootFail, BootWarn
			h = fmt.Sprintf("delete old generations (\"%s\"), then reinstall the boot loader so it drops their entries (\"%s\")", s.gc(3).For(s.t.Name), s.sshCmd(true, "/run/current-system/bin/switch-to-configuration", "boot"))
		}
		st := OK
		switch {
		case d.Free < failAt:
			st = Fail
		case d.Free < warnAt:
			st = Warn
		}
		parts = append(parts, fmt.Sprintf("%s: %s free of %s", d.Path, human.Bytes(d.Free), human.Bytes(d.Size)))
		if rank(st) > rank(worst) {
			worst, hint = st, h
		}
	}
	if len(parts) == 0 {
		return warn("", "no /nix/store on the host")
	}
	r := Finding{Status: worst, Detail: strings.Join(parts, "; "), Hint: hint}
	if worst == Fail {
		r.Class = fault.Disk
	}
	return r
}

func rank(s Status) int {
	switch s {
	case Warn:
		return 1
	case Fail:
		return 2
	}
	return 0
}

func checkUnits(ctx context.Context, s *session) Finding {
	f, err := s.readFacts(ctx)
	if err != nil {
		return failed(err)
	}
	if !f.Systemd {
		return skip("no systemctl on the host")
	}
	if len(f.Failed) == 0 {
		return ok("no failed units")
	}
	return warn(fmt.Sprintf("see why with \"%s\"", s.sshCmd(false, "journalctl", "-u", f.Failed[0], "-n", "50")),
		"failed: %s", strings.Join(f.Failed, ", "))
}

func checkLocks(ctx context.Context, s *session) Finding {
	f, err := s.readFacts(ctx)
	if err != nil {
		return failed(err)
	}
	var held, idle []string
	for _, l := range f.Locks {
		d := l.Path
		if o := strings.TrimSpace(l.Owner); o != "" {
			d += " (" + o + ")"
		}
		if l.Held {
			held = append(held, d)
		} else {
			idle = append(idle, d)
		}
	}
	if len(held) > 0 {
		return warn(fmt.Sprintf("another deploy or nixos-rebuild runs now; wait for it, or if it hangs find it with \"%s\"", s.sshCmd(false, "pgrep", "-af", "switch-to-configuration")),
			"held: %s", strings.Join(held, ", "))
	}
	if len(idle) > 0 {
		return ok("not held: %s left by a finished or killed deploy (harmless; the next deploy takes it over)", strings.Join(idle, ", "))
	}
	return ok("no activation running")
}

// nixSystem maps uname -m and -s to Nix's platform name.
func nixSystem(arch, kernel string) string {
	switch arch {
	case "arm64":
		arch = "aarch64"
	case "amd64":
		arch = "x86_64"
	case "i386", "i586":
		arch = "i686"
	case "armv7", "armv7hl":
		arch = "armv7l"
	}
	return arch + "-" + strings.ToLower(kernel)
}

func checkPlatform(ctx context.Context, s *session) Finding {
	f, err := s.readFacts(ctx)
	if err != nil {
		return failed(err)
	}
	got := nixSystem(f.Arch, f.Kernel)
	switch {
	case s.t.System == "":
		return skip("the configuration names no platform (nixpkgs.hostPlatform); the host is %s", got)
	case got != s.t.System:
		return Finding{Status: Fail, Class: fault.Build,
			Detail: fmt.Sprintf("the host is %s but its configuration is built for %s", got, s.t.System),
			Hint:   fmt.Sprintf("set nixpkgs.hostPlatform = \"%s\"; in the host's configuration (or deploy to the right host)", got)}
	}
	return ok("%s, as configured", got)
}
