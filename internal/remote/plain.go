package remote

import (
	"context"
	_ "embed" // the host-side plain activation
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/lines"
	"github.com/skiffdeploy/skiff/internal/transport"
)

//go:embed plain.sh
var plainFile string

// plainScript is plain.sh, after restore.sh's functions, without their
// comments.
var plainScript = RestoreFuncs + withoutComments(plainFile)

//go:embed restore.sh
var restoreFile string

// RestoreFuncs are the host-side steps that undo a change of the system
// profile (restore.sh, without its comments): plain.sh's and the
// activation supervisor's, which prepend them.
var RestoreFuncs = withoutComments(restoreFile)

// A Change is a plain activation (no supervisor): the system profile,
// then the activation, sent as one step (see StartChange).
type Change struct {
	Darwin   bool   // nix-darwin: activate-user, then activate
	Toplevel string // the system to activate
	Action   string // NixOS: switch-to-configuration's action
	// NewGeneration adds a generation for Toplevel first; Generation > 0
	// switches the profile to that existing generation instead (skiff
	// rollback). Neither: the profile is left alone (test, dry-activate).
	NewGeneration bool
	Generation    int
	// Before is what the host ran and booted before: what a failed
	// activation returns to.
	Before State
	// InstallBootloader (re)installs the boot loader as the activation
	// makes a boot default (NixOS switch and boot:
	// NIXOS_INSTALL_BOOTLOADER=1).
	InstallBootloader bool
}

// Changed is how a Change ended.
type Changed struct {
	// Generation is the profile's generation once set (0: the profile
	// was left alone, or could not be set).
	Generation int
	// ProfileErr says that setting the profile failed (classified like
	// any host operation: a full disk is fault.Disk); nothing ran then.
	ProfileErr error
	// Activation is the activation's exit code, output and failed units
	// (when it ran); Step names the step that ended it (nix-darwin:
	// activate-user or activate).
	Activation
	Step string
	// RolledBack: the activation failed and the host undid it itself:
	// the profile restored (the new generation deleted) and the
	// previous system activated again. RollbackErrs are the parts of
	// that which failed.
	RolledBack   bool
	RollbackErrs []error
}

// Activated reports whether the activation ran and succeeded (NixOS's
// exit 4, units failed, counts: the new system is active).
func (c Changed) Activated(darwin bool) bool {
	return c.ProfileErr == nil && (c.ExitCode == 0 || (!darwin && c.ExitCode == 4))
}

// OneStep reports whether StartChange can send c as one step: a
// nix-darwin activation runs activate-user as the login user, which the
// host's session (root) is not unless the login is root.
func (h *Host) OneStep(c Change) bool { return !c.Darwin || !h.Sudo() }

// StartChange sends c to the host as one step (plain.sh): the profile,
// then the activation, which never runs when the profile could not be
// set; a failed activation is undone on the host in the same step (so
// under the deploy lock the session holds, even when the release is
// already sent behind it). Output goes to out as it comes; rollback, when
// set, is given each of the host's reports as it comes: "generation N"
// (the profile is set; the activation starts), "rollback" (the host
// starts undoing a failed activation). On the
// host's session the step is sent without waiting (see Pending): the
// steps sent after it, before Wait, travel in the same round trip.
func (h *Host) StartChange(ctx context.Context, c Change, out io.Writer, mark func(verb, rest string)) *PendingChange {
	gen := ""
	switch {
	case c.NewGeneration:
		gen = "new"
	case c.Generation > 0:
		gen = strconv.Itoa(c.Generation)
	}
	kind := "nixos"
	if c.Darwin {
		kind = "darwin"
	}
	w := &changeWriter{out: out, mark: mark}
	argv := h.priv("sh", "-c", plainScript, "skiff-activate", kind, Profile, c.Toplevel, c.Action, gen,
		strconv.Itoa(c.Before.Generation), c.Before.Profile, c.Before.Current)
	if c.InstallBootloader {
		argv = append(argv, "1")
	}
	what := "activate " + c.Toplevel
	return &PendingChange{h: h, c: c, w: w, p: h.start(ctx, what, transport.Exec{Argv: argv, Stream: w})}
}

// PendingChange is a Change sent to the host.
type PendingChange struct {
	h *Host
	c Change
	w *changeWriter
	p *Pending
}

// Wait waits for the Change's end. The error is for a step that could not
// run or whose end is unknown (the connection lost, sudo refusing): the
// activation may or may not have run.
func (p *PendingChange) Wait(ctx context.Context) (Changed, error) {
	_, err := p.p.Wait(ctx)
	p.w.flush()
	ch, told, setErr := parseChange(p.c, p.w.marks, p.w.output.String())
	if setErr != nil {
		ch.ProfileErr = p.h.explain("set system profile", setErr)
	}
	if told {
		// The host said how it ended; the step's own exit code is the
		// activation's.
		return ch, nil
	}
	if err == nil {
		return ch, fmt.Errorf("%s: activate %s: the host did not say how the activation ended", p.h.Name, p.c.Toplevel)
	}
	// Pending.Wait classified it (sudo refusing, ssh failing).
	return ch, err
}

// parseChange reads how a Change ended from plain.sh's marks and output;
// told says that the host said it (the profile failed, or the activation
// ended), setErr is the failure of setting the profile.
func parseChange(c Change, marks []string, output string) (ch Changed, told bool, setErr *command.Error) {
	ch.Output = output
	ch.FailedUnits = ParseFailedUnits(output)
	var lines []string
	for _, m := range marks {
		verb, rest, _ := strings.Cut(m, " ")
		switch verb {
		case "error":
			lines = append(lines, rest)
		case "set-failed":
			code, _ := strconv.Atoi(rest)
			stderr := strings.Join(lines, "\n") + "\n"
			setErr = &command.Error{Argv: []string{"nix-env", "-p", Profile}, ExitCode: code, Stderr: stderr, Err: fmt.Errorf("exit status %d", code)}
			told = true
		case "generation":
			ch.Generation, _ = strconv.Atoi(rest)
		case "activated":
			told = true
			code, step, _ := strings.Cut(rest, " ")
			ch.ExitCode, _ = strconv.Atoi(code)
			ch.Step = step
		case "rollback":
			ch.RolledBack = true
		case "restored":
			if rest != "0" {
				ch.RollbackErrs = append(ch.RollbackErrs, fmt.Errorf("restoring the system profile to generation %d exited with %s", c.Before.Generation, rest))
			}
			ch.Generation = 0
		case "reactivated":
			what, code, _ := strings.Cut(rest, " ")
			if code != "0" && (code != "4" || c.Darwin || what == "boot") {
				old := c.Before.Current
				if what == "boot" || old == "" {
					old = c.Before.Profile
				}
				ch.RollbackErrs = append(ch.RollbackErrs, fmt.Errorf("re-activating %s (%s) exited with %s", old, what, code))
			}
		}
	}
	return ch, told, setErr
}

// changeWriter passes a Change's output on, line by line, keeping back
// plain.sh's "skiff-activate: " lines.
type changeWriter struct {
	out    io.Writer
	mark   func(verb, rest string)
	lines  *lines.Writer
	output strings.Builder // the output, without the marks
	marks  []string
}

const changeMark = "skiff-activate: "

func (w *changeWriter) Write(p []byte) (int, error) {
	if w.lines == nil {
		w.lines = lines.New(func(l []byte) { w.line(string(l)) })
	}
	return w.lines.Write(p)
}

// line takes one line, with its newline (none for the last one).
func (w *changeWriter) line(l string) {
	if m, ok := strings.CutPrefix(strings.TrimRight(l, "\n"), changeMark); ok {
		w.marks = append(w.marks, m)
		if w.mark != nil {
			verb, rest, _ := strings.Cut(m, " ")
			w.mark(verb, rest)
		}
		return
	}
	w.output.WriteString(l)
	if w.out != nil {
		_, _ = io.WriteString(w.out, l)
	}
}

func (w *changeWriter) flush() {
	if w.lines != nil {
		w.lines.Flush()
	}
}

// StartRelease sends the release of l like StartPriv sends a step (see
// Pending): on the host's session, behind the steps sent before it, without
// waiting for its answer; Release then has nothing left to do. A lock with
// a keeper of its own is released at once.
func (l *Lock) StartRelease() *Pending {
	p := &Pending{}
	if l.session == nil {
		l.Release()
		return p
	}
	l.once.Do(func() {
		argv := []string{"release"}
		ps, err := l.session.send(argv, []string{request("release")}, []io.Writer{nil})
		if err != nil {
			return // the session has ended, and the lock with it
		}
		p = &Pending{h: l.h, s: l.session, what: "release the deploy lock", argv: argv, ps: ps}
	})
	return p
}

// WaitReleased waits for the release StartRelease sent, at most
// releaseWait: the lock is gone either way once the session ends.
func (p *Pending) WaitReleased() {
	ctx, cancel := context.WithTimeout(context.Background(), releaseWait)
	defer cancel()
	_, _ = p.Wait(ctx)
}
