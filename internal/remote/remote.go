package remote

import (
	"bufio"
	"context"
	_ "embed" // the host-side state script
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// Profile is the NixOS system profile.
const Profile = "/nix/var/nix/profiles/system"

// Host is one target.
type Host struct {
	Name string
	Conn *transport.SSH
	// Password, when set, is the login user's sudo password: it reaches
	// sudo, and only sudo, on hosts whose sudo asks for it (see sudo.go);
	// never in argv, environment or logs.
	Password string

	sessMu sync.Mutex
	sess   *Session // the open session, which privileged steps go through

	sudoMu     sync.Mutex
	sudoProbed bool // sudoAsks has been decided
	sudoAsks   bool // sudo wants the password on this host (policy, not a cache)
}

// run runs argv on the host and classifies what failed.
func (h *Host) run(ctx context.Context, what string, e transport.Exec) (command.Result, error) {
	res, err := h.exec(ctx, e)
	if err == nil {
		return res, nil
	}
	return res, h.explain(what, err)
}

// explain classifies the failure of a host operation.
func (h *Host) explain(what string, err error) error {
	if _, ok := fault.As(err); ok {
		return err
	}
	var ce *command.Error
	if !errors.As(err, &ce) {
		return fmt.Errorf("%s: %s: %w", h.Name, what, err)
	}
	if fe := h.sudoFault(ce); fe != nil {
		return fe
	}
	if ce.ExitCode == 127 && strings.Contains(ce.Stderr, "nix") {
		return fault.Wrap(err, h.Name, fault.Nix,
			"install Nix on the host, or make nix-store and nix-env reachable on the PATH of non-interactive ssh sessions",
			"%s: nix is not installed on the host (%s)", what, command.Tail(ce.Stderr, 1))
	}
	if strings.Contains(ce.Stderr, "No space left on device") {
		return fault.Wrap(err, h.Name, fault.Disk,
			fmt.Sprintf("free space in /nix/store: \"%s\" after deleting old generations", h.Conn.ByHand(h.PrivArgv("nix-collect-garbage")...)),
			"%s: no space left on the host's disk", what)
	}
	return fmt.Errorf("%s: %s: %w", h.Name, what, err)
}

// sudoFault recognises sudo refusing to run a privileged step.
func (h *Host) sudoFault(ce *command.Error) *fault.Error {
	if !h.Sudo() {
		return nil
	}
	u := h.Conn.Target.Login()
	text := ce.Stderr
	switch {
	case strings.Contains(text, "incorrect password"), strings.Contains(text, "Sorry, try again"):
		return &fault.Error{Host: h.Name, Class: fault.Sudo, Err: ce,
			Msg:  fmt.Sprintf("sudo on the host refused the password given for %s", u),
			Hint: "run again and type the sudo password of " + u + " on that host"}
	case strings.Contains(text, "a password is required"), strings.Contains(text, "a terminal is required"):
		return &fault.Error{Host: h.Name, Class: fault.Sudo, Err: ce,
			Msg:  fmt.Sprintf("sudo on the host wants a password for %s; skiff runs sudo non-interactively", u),
			Hint: fmt.Sprintf("run with --ask-sudo-password, allow password-less sudo for %s (security.sudo.wheelNeedsPassword = false, or \"%s ALL=(ALL) NOPASSWD: ALL\" in sudoers), or deploy as root", u, u)}
	case strings.Contains(text, "not in the sudoers file"), strings.Contains(text, "is not allowed to"), strings.Contains(text, "may not run sudo"):
		return &fault.Error{Host: h.Name, Class: fault.Sudo, Err: ce,
			Msg:  fmt.Sprintf("%s may not use sudo on the host", u),
			Hint: fmt.Sprintf("add %s to the wheel group (users.users.%s.extraGroups = [ \"wheel\" ]) with password-less sudo, or deploy as root", u, u)}
	case ce.ExitCode == 127 && strings.Contains(text, "sudo"):
		return &fault.Error{Host: h.Name, Class: fault.Sudo, Err: ce,
			Msg:  "sudo is not installed on the host",
			Hint: "install sudo on the host, or deploy as root (--target-user root)"}
	}
	return nil
}

// State is what a host runs and boots.
type State struct {
	Current    string // /run/current-system target; empty when none
	Booted     string // /run/booted-system target
	Profile    string // system toplevel the profile points at
	Generation int    // the profile's generation; 0 when none
	// Systemd: the host runs systemd (where a supervisor is a
	// transient unit).
	Systemd bool
	// Systemctl: the host has systemctl, and FailedUnits are its failed
	// units.
	Systemctl   bool
	FailedUnits []string
	// Health is what systemd says about the host (State empty without
	// systemctl).
	Health Health
	// Boot is what the host booted, and whether the running system needs
	// a reboot.
	Boot Boot
	// Gens are the system profile's generations, oldest first; read only
	// by ReadSystem and ListGenerations.
	Gens []Generation
}

//go:embed system.sh
var systemFile string

// stateScript is system.sh then reboot.sh, without their comments: every
// read of a host's systems, generations, failed units and boot state, in
// one command. $1 is empty (the real root); $2 "gens" lists the
// generations too, "links" stops after the links. reboot.sh comes last: it ends early when the host
// runs the system it booted.
var stateScript = withoutComments(systemFile) + bootScript

// ReadState reads the host's running system and system profile, whether
// it runs systemd, its health and failed units and its boot state, in
// one command (the probe of a deploy, and all that skiff status reads).
// For a login that is not root it goes through sudo, which also proves
// early that the privileged steps will be allowed.
func (h *Host) ReadState(ctx context.Context) (State, error) {
	return h.readState(ctx, true, "")
}

// ReadSystem is ReadState with the system profile's generations (State.Gens).
func (h *Host) ReadSystem(ctx context.Context) (State, error) {
	return h.readState(ctx, true, "gens")
}

// stateArgv is stateScript's command, before the privileges: part is its
// second argument ("gens", "links" or empty).
func stateArgv(part string) []string {
	argv := []string{"sh", "-c", stateScript, "sh", ""}
	if part != "" {
		argv = append(argv, part)
	}
	return argv
}

// ReadLinks is ReadState without asking systemd: what the host runs,
// boots and has as its profile, and its boot state (Systemd, Systemctl,
// FailedUnits and Health are left unknown, not empty). It is the probe of
// a host that likely runs the system already: enough to see that it is up
// to date and whether it needs a reboot, for a fraction of the host's
// work.
func (h *Host) ReadLinks(ctx context.Context) (State, error) {
	return h.readState(ctx, true, "links")
}

// readState runs stateScript, through sudo when priv and the login is not
// root; part is its second argument ("gens", "links" or empty).
func (h *Host) readState(ctx context.Context, priv bool, part string) (State, error) {
	argv := stateArgv(part)
	what := "read system state"
	if part == "gens" {
		what = "list generations"
	}
	if priv {
		argv = h.priv(argv...)
	}
	res, err := h.run(ctx, what, transport.Exec{Argv: argv})
	if err != nil {
		return State{}, err
	}
	return h.stateOf(string(res.Stdout))
}

// stateOf is parseState, whose faults (no Nix on the host) name this host.
func (h *Host) stateOf(out string) (State, error) {
	st, err := parseState(out)
	if fe, ok := fault.As(err); ok && fe.Host == "" {
		fe.Host = h.Name
	}
	return st, err
}

var linkRE = regexp.MustCompile(`^system-(\d+)-link$`)

// parseState reads stateScript's output.
func parseState(out string) (State, error) {
	var st State
	var gens []string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 16<<20) // the failed units' JSON is one line
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "current":
			st.Current = v
		case "booted":
			st.Booted = v
		case "profile":
			st.Profile = v
		case "link":
			if m := linkRE.FindStringSubmatch(path.Base(v)); m != nil {
				st.Generation, _ = strconv.Atoi(m[1])
			}
		case "systemd":
			st.Systemd = v == "1"
		case "state":
			st.Health.State = v
		case "units":
			units, err := ParseUnits([]byte(v))
			if err != nil {
				return st, err
			}
			st.Systemctl, st.FailedUnits = true, failedNames(units)
			st.Health.Failed = []Unit{}
			for _, u := range units {
				if u.Active == "failed" || u.Sub == "failed" {
					st.Health.Failed = append(st.Health.Failed, u)
				}
			}
		case "unit":
			f := strings.SplitN(v, "\t", 5)
			if len(f) == 5 && f[0] != "" {
				u := Unit{Unit: strings.TrimPrefix(f[0], "●"), Load: f[1], Active: f[2], Sub: f[3], Description: f[4]}
				st.FailedUnits = append(st.FailedUnits, u.Unit)
				st.Health.Failed = append(st.Health.Failed, u)
			}
		case "gen":
			gens = append(gens, v)
		case "nix":
			return st, fault.New("", fault.Nix, "install Nix on the host (NixOS has it); skiff needs nix-store and nix-env there",
				"nix is not installed on the host")
		}
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("read system state: %w", err)
	}
	if st.Generation == 0 {
		st.Profile = ""
	}
	st.Boot = parseBoot(out)
	st.Gens = parseGens(gens, st)
	return st, nil
}

// Store is what a host's store has, as far as a deploy is concerned.
type Store struct {
	Missing []string // paths, of those asked about, that the store lacks
	Free    int64    // bytes free on the filesystem holding /nix/store; -1 when unknown
	// BaseInvalid: the host lacks the base system of the query, so
	// Missing says nothing (see QueryStore).
	BaseInvalid bool
}

// missingScript reports free space, roots the new system, and reports
// the invalid paths among those given on standard input (so a closure of
// any size fits), with the base system $4 when not empty (see the file
// and skiff_invalid).
var missingScript = withoutComments(missingFile)

//go:embed missing.sh
var missingFile string

// QueryStore finds the paths the host lacks and the free space of its
// store, in one round trip. Before it looks, it roots root (unless zero)
// on the host, so that a garbage collection cannot delete the system
// between this query and the deploy's commit; the caller removes the root
// with Unroot when the deploy of the host ends, whether or not the query
// succeeded.
//
// base, unless empty, is a system the host likely has whose closure the
// caller left out of paths: the host checks base with them, and only
// says Store.BaseInvalid when it lacks it (the caller then asks about the
// whole closure).
func (h *Host) QueryStore(ctx context.Context, paths []string, root Root, base string) (Store, error) {
	args, err := queryArgs(root, base)
	if err != nil {
		return Store{}, fmt.Errorf("%s: query store paths: %w", h.Name, err)
	}
	in := strings.Join(paths, "\n") + "\n"
	res, err := h.run(ctx, "query store paths", transport.Exec{
		Argv:  h.priv(append([]string{"sh", "-c", rooted(missingScript), "sh"}, args...)...),
		Stdin: strings.NewReader(in),
	})
	if err != nil {
		return Store{}, err
	}
	return parseStore(string(res.Stdout)), nil
}

// queryArgs are missingScript's arguments: root's, then base.
func queryArgs(root Root, base string) ([]string, error) {
	args, err := root.args()
	if err != nil {
		return nil, err
	}
	if base != "" && (!strings.HasPrefix(base, "/") || strings.ContainsAny(base, "\n")) {
		return nil, fmt.Errorf("invalid base system %q", base)
	}
	return append(args, base), nil
}

func parseStore(out string) Store {
	st := Store{Free: -1}
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "base invalid":
			st.BaseInvalid = true
		case strings.HasPrefix(l, "df "):
			st.Free = parseDf(l[len("df "):]).Free
		case strings.HasPrefix(l, "/"):
			st.Missing = append(st.Missing, l)
		}
	}
	return st
}

// SetProfile points the system profile at toplevel, creating a new
// generation, and returns its number.
func (h *Host) SetProfile(ctx context.Context, toplevel string) (int, error) {
	script := `nix-env -p "$1" --set "$2" && readlink "$1"`
	res, err := h.run(ctx, "set system profile", transport.Exec{Argv: h.priv("sh", "-c", script, "sh", Profile, toplevel)})
	if err != nil {
		return 0, err
	}
	m := linkRE.FindStringSubmatch(path.Base(strings.TrimSpace(string(res.Stdout))))
	if m == nil {
		return 0, fmt.Errorf("%s: set system profile: unexpected profile link %q", h.Name, strings.TrimSpace(string(res.Stdout)))
	}
	n, _ := strconv.Atoi(m[1])
	return n, nil
}

// RestoreProfile makes generation old current again and deletes the
// generation made by a failed deploy.
func (h *Host) RestoreProfile(ctx context.Context, old, failed int) error {
	var script string
	var args []string
	if old > 0 {
		script = `nix-env -p "$1" --switch-generation "$2" && nix-env -p "$1" --delete-generations "$3"`
		args = []string{Profile, strconv.Itoa(old), strconv.Itoa(failed)}
	} else {
		// First deploy: no earlier generation to return to.
		script = `rm -f "$1" "$1-$2-link"`
		args = []string{Profile, strconv.Itoa(failed)}
	}
	_, err := h.run(ctx, "restore system profile", transport.Exec{Argv: h.priv(append([]string{"sh", "-c", script, "sh"}, args...)...)})
	return err
}

// Activation is the outcome of switch-to-configuration.
type Activation struct {
	ExitCode    int
	Output      string
	FailedUnits []string
}

// Switch runs TOPLEVEL/bin/switch-to-configuration ACTION, copying its
// output to out as it comes. A non-zero exit is not an error here: the
// caller decides from Activation.ExitCode.
func (h *Host) Switch(ctx context.Context, toplevel, action string, out io.Writer) (Activation, error) {
	argv := h.priv(path.Join(toplevel, "bin", "switch-to-configuration"), action)
	res, err := h.exec(ctx, transport.Exec{Argv: argv, Stream: out})
	act := Activation{Output: string(res.Stdout) + string(res.Stderr)}
	act.FailedUnits = ParseFailedUnits(act.Output)
	if err == nil {
		return act, nil
	}
	var ce *command.Error
	if errors.As(err, &ce) && ce.ExitCode > 0 && ce.ExitCode != 255 {
		if fe := h.sudoFault(ce); fe != nil {
			return act, fe
		}
		act.ExitCode = ce.ExitCode
		return act, nil
	}
	if _, ok := fault.As(err); ok {
		return act, err
	}
	return act, fmt.Errorf("%s: switch-to-configuration %s: %w", h.Name, action, err)
}

var failedRE = regexp.MustCompile(`(?m)^warning: the following units failed: (.*)$`)

// ParseFailedUnits reads the units switch-to-configuration reports as
// failed.
func ParseFailedUnits(out string) []string {
	var units []string
	for _, m := range failedRE.FindAllStringSubmatch(out, -1) {
		for _, u := range strings.Split(m[1], ",") {
			if u = strings.TrimSpace(u); u != "" {
				units = append(units, u)
			}
		}
	}
	return units
}

// ActivationMeaning explains switch-to-configuration's exit codes.
func ActivationMeaning(code int) string {
	switch code {
	case 1:
		return "usage error, boot loader installation failed or not run as root"
	case 2:
		return "the activation script failed"
	case 4:
		return "some units failed"
	case 11:
		return "another switch-to-configuration holds the lock (/run/nixos/switch-to-configuration.lock)"
	case 100:
		return "the new system needs a reboot (incompatible init-interface-version)"
	}
	return "unknown failure"
}
