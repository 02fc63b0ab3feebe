package lab

import (
	"path/filepath"
	"sort"
)

// DarwinShims are the shim-dir commands of a host with HostSpec.Darwin: uname
// answers like an Intel Mac, and systemctl and journalctl are missing (a shell's
// "not found", exit 127), as on macOS.
var DarwinShims = map[string]string{
	"uname": `#!/bin/sh
# uname of a lab host laid out like a nix-darwin machine (an Intel Mac).
[ $# -eq 0 ] && set -- -s
out=
for a in "$@"; do
	case $a in
	-s) v=Darwin ;;
	-m|-p) v=x86_64 ;;
	-r) v=23.6.0 ;;
	-n) v=$(cat /etc/hostname 2>/dev/null || echo mac) ;;
	-a) v="Darwin $(cat /etc/hostname 2>/dev/null || echo mac) 23.6.0 Darwin Kernel Version 23.6.0 x86_64" ;;
	*) echo "uname: illegal option $a" >&2; exit 1 ;;
	esac
	out="${out:+$out }$v"
done
echo "$out"
`,
	"systemctl":  missingCommand("systemctl"),
	"journalctl": missingCommand("journalctl"),
}

func missingCommand(name string) string {
	return "#!/bin/sh\n# macOS has no " + name + ".\necho \"sh: " + name + ": command not found\" >&2\nexit 127\n"
}

// installDarwinShims writes DarwinShims over the host's shim dir.
func (h *Host) installDarwinShims() error {
	names := make([]string, 0, len(DarwinShims))
	for n := range DarwinShims {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := writeFileAtomic(filepath.Join(h.shimDir(), n), []byte(DarwinShims[n]), 0o755); err != nil {
			return err
		}
	}
	return nil
}
