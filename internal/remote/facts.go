package remote

import (
	"bufio"
	_ "embed" // the host-side facts script
	"strconv"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
)

// Facts are what skiff doctor reads on a host in one round trip.
type Facts struct {
	Arch       string // uname -m
	Kernel     string // uname -s
	NixVersion string // "nix-store (Nix) 2.8.0"; empty when nix is missing
	StoreRW    bool   // the Nix database can be written (root or through sudo)
	StoreErr   string // why not
	// SudoTried: the login is not root and "sudo -n true" was run;
	// SudoCode is its exit code, SudoErr what it printed.
	SudoTried bool
	SudoCode  int
	SudoErr   string
	Disks     []Disk     // /nix/store, and /boot when it is a directory
	Failed    []string   // failed units (systemctl list-units --failed)
	Systemd   bool       // systemctl is present
	Locks     []LockInfo // activation locks present
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

//go:embed facts.sh
var factsFile string

// factsScript is facts.sh without its comments.
var factsScript = withoutComments(factsFile)

// FactsCommand is the command that prints what doctor checks on a host
// (ParseFacts reads it). It needs no privileges: for a login other than
// root it tries sudo -n itself, and reads as root through it what needs
// root. Doctor runs it as the remote command of its verbose login, so the
// login and the facts take one ssh command.
func FactsCommand() []string { return []string{"sh", "-c", factsScript} }

// ParseFacts reads the output of FactsCommand.
func ParseFacts(out string) Facts { return parseFacts(out) }

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
		case "sudo":
			f.SudoTried = true
			f.SudoCode, _ = strconv.Atoi(at(p, 1))
			f.SudoErr = at(p, 2)
		case "storerw":
			f.StoreRW = at(p, 1) == "yes"
			if !f.StoreRW {
				f.StoreErr = at(p, 1)
			}
		case "df":
			// Filesystem 1024-blocks Used Available Capacity Mounted-on
			d := parseDf(at(p, 2))
			d.Path = at(p, 1)
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

// SudoError classifies a failed "sudo -n true" (its exit code and
// message, as facts report them): whether sudo wants a password, the
// user may not use it or sudo is missing, and what to do.
func (h *Host) SudoError(code int, msg string) error {
	ce := &command.Error{Argv: []string{"sudo", "-n", "true"}, ExitCode: code, Stderr: msg}
	return h.explain("sudo -n true", ce)
}
