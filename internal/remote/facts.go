package remote

import (
	"bufio"
	"context"
	"strconv"
	"strings"

	"github.com/skiffdeploy/skiff/internal/transport"
)

// Facts are what skiff doctor reads on a host in one round trip.
type Facts struct {
	Arch       string     // uname -m
	Kernel     string     // uname -s
	NixVersion string     // "nix-store (Nix) 2.8.0"; empty when nix is missing
	StoreRW    bool       // the Nix database can be written (root or through sudo)
	StoreErr   string     // why not
	Disks      []Disk     // /nix/store, and /boot when it is a directory
	Failed     []string   // failed units (systemctl list-units --failed)
	Systemd    bool       // systemctl is present
	Locks      []LockInfo // activation locks present
}

// Disk is the free space of the filesystem holding Path.
type Disk struct {
	Path   string
	Device string // the filesystem (df's first column)
	Mount  string
	Size   int64
	Free   int64
}

// LockInfo is a lock file and whether a process holds it.
type LockInfo struct {
	Path  string
	Held  bool
	Owner string // who took it (skiff's deploy lock), when known
}

// factsScript prints one KEY<TAB>VALUE line per fact. It takes no
// arguments. NixOS's activation lock is probed with flock -n (a lock file
// left by a dead process is not held); skiff's deploy lock (LockDir) is
// held while its keeper or an activation it started lives.
const factsScript = `printf 'arch\t%s\n' "$(uname -m)"
printf 'kernel\t%s\n' "$(uname -s)"
printf 'nix\t%s\n' "$(nix-store --version 2>/dev/null | head -n 1)"
db=/nix/var/nix/db
if [ "$(id -u)" = 0 ]; then
	if t=$(mktemp "$db/.skiff-doctor.XXXXXX" 2>&1); then rm -f "$t"; printf 'storerw\tyes\n'; else printf 'storerw\t%s\n' "$t"; fi
fi
for d in /nix/store /boot; do
	[ -d $d ] || continue
	printf 'df\t%s\t%s\n' $d "$(df -Pk $d 2>/dev/null | tail -n 1)"
done
if command -v systemctl >/dev/null 2>&1; then
	printf 'systemd\tyes\n'
	systemctl list-units --failed --plain --no-legend 2>/dev/null | while read -r u rest; do printf 'failed\t%s\n' "$u"; done
fi
l=/run/nixos/switch-to-configuration.lock
if [ -e $l ]; then
	held=no
	if command -v flock >/dev/null 2>&1 && ! flock -n $l true 2>/dev/null; then held=yes; fi
	printf 'lock\t%s\t%s\t\n' $l $held
fi
l=/run/skiff/lock
if [ -d $l ]; then
	held=no
	k=$(sed -n 's/^keeper=//p' $l/owner 2>/dev/null)
	if [ -n "$k" ] && kill -0 "$k" 2>/dev/null; then held=yes; fi
	for f in /run/skiff/act-*/pid; do
		[ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && held=yes
	done
	printf 'lock\t%s\t%s\t%s\n' $l $held "$(grep -E '^(user|machine|since)=' $l/owner 2>/dev/null | tr '\n' ' ')"
fi`

// ReadFacts reads what doctor checks on the host. For a login other than
// root, asRoot runs it through sudo -n (which must already be known to
// work); otherwise the store's writability is not probed.
func (h *Host) ReadFacts(ctx context.Context, asRoot bool) (Facts, error) {
	argv := []string{"sh", "-c", factsScript}
	if asRoot {
		argv = h.priv(argv...)
	}
	res, err := h.run(ctx, "read host facts", transport.Exec{Argv: argv})
	if err != nil {
		return Facts{}, err
	}
	return parseFacts(string(res.Stdout)), nil
}

func parseFacts(out string) Facts {
	var f Facts
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		p := strings.Split(sc.Text(), "\t")
		switch p[0] {
		case "arch":
			f.Arch = at(p, 1)
		case "kernel":
			f.Kernel = at(p, 1)
		case "nix":
			f.NixVersion = strings.TrimSpace(at(p, 1))
		case "storerw":
			f.StoreRW = at(p, 1) == "yes"
			if !f.StoreRW {
				f.StoreErr = at(p, 1)
			}
		case "df":
			// Filesystem 1024-blocks Used Available Capacity Mounted-on
			d := Disk{Path: at(p, 1), Size: -1, Free: -1}
			if fs := strings.Fields(at(p, 2)); len(fs) >= 6 {
				if kb, err := strconv.ParseInt(fs[1], 10, 64); err == nil {
					d.Size = kb * 1024
				}
				if kb, err := strconv.ParseInt(fs[3], 10, 64); err == nil {
					d.Free = kb * 1024
				}
				d.Device, d.Mount = fs[0], fs[5]
			}
			f.Disks = append(f.Disks, d)
		case "systemd":
			f.Systemd = true
		case "failed":
			if u := strings.TrimPrefix(at(p, 1), "●"); u != "" {
				f.Failed = append(f.Failed, u)
			}
		case "lock":
			f.Locks = append(f.Locks, LockInfo{Path: at(p, 1), Held: at(p, 2) == "yes", Owner: at(p, 3)})
		}
	}
	return f
}

func at(p []string, i int) string {
	if i < len(p) {
		return p[i]
	}
	return ""
}

// CheckSudo runs "sudo -n true" for a login other than root; the error
// says whether sudo wants a password or the user may not use it, and the
// sudoers line to add.
func (h *Host) CheckSudo(ctx context.Context) error {
	if !h.Sudo() {
		return nil
	}
	_, err := h.run(ctx, "sudo -n true", transport.Exec{Argv: []string{"sudo", "-n", "true"}})
	return err
}
