package e2e

import (
	"regexp"
	"strings"
	"testing"

	"github.com/skiffdeploy/skiff/internal/lab"
)

// sshTrace counts, in a -x trace, the ssh commands that open a session on
// a host (not the control commands, "ssh -O"), the requests on the hosts'
// sessions, and the copies (nix-store --import, or nix copy); and from them the sequential round
// trips to the host.
type sshTrace struct {
	sessions []string // "+ ssh ..." lines
	requests []string // "+ session HOST: ..." lines
	copies   int      // the closure's copies: nix-store --import over ssh, or nix copy
	masters  int      // connections opened during the evaluation (ssh -N)
	// trips counts the sequential round trips: each ssh command but the
	// host session's own (its first request travels with its start),
	// each request not sent together with one before it (traced
	// "pipelined"), each nix copy.
	trips int
	// endTrips are the trips at the end that only give the host back:
	// the last trip when a release or the end of the session's input
	// travels in it, and each such trip before it in a row. One when
	// the host is given back behind the last step.
	endTrips int
}

var traceLogRE = regexp.MustCompile(`^\d\d:\d\d:\d\d `)

// stepText is the step traced on lines[i] ("+ ..."), with the lines of
// its command that go on to the next trace or log line.
func stepText(lines []string, i int) string {
	text := lines[i]
	for _, c := range lines[i+1:] {
		if strings.HasPrefix(c, "+ ") || traceLogRE.MatchString(c) {
			break
		}
		text += "\n" + c
	}
	return text
}

func sshTraceOf(stderr string) sshTrace {
	var tr sshTrace
	lines := strings.Split(stderr, "\n")
	// trailing: the trips in a row at the end that give the host back;
	// backs: the current trip gives it back (a release or the end of
	// the session's input travels in it).
	trailing, backs := 0, false
	trip := func(givesBack bool) {
		tr.trips++
		backs = givesBack
		if givesBack {
			trailing++
		} else {
			trailing = 0
		}
	}
	// alongside: the requests being read travel alongside another
	// command; releasedAlongside: the release did, with the last one.
	alongside, releasedAlongside := false, false
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "+ ssh ") && strings.Contains(l, "skiff-import"):
			// The copy: the paths the host lacks, as one stream.
			tr.copies++
			trip(false)
		case strings.HasPrefix(l, "+ ssh ") && strings.Contains(l, " -N "):
			// A connection opened while the flake is evaluated: no
			// command, no round trip the deploy waits for.
			tr.masters++
		case strings.HasPrefix(l, "+ ssh ") && !strings.Contains(l, " -O "):
			tr.sessions = append(tr.sessions, l)
			if !strings.Contains(l, "ControlPath=none") {
				releasedAlongside = false
			}
			if !strings.Contains(stepText(lines, i), "skiff-session") {
				trip(false)
			}
		case strings.HasPrefix(l, "+ session "):
			if !strings.HasSuffix(l, ": end of input") {
				tr.requests = append(tr.requests, l)
			}
			head, _, _ := strings.Cut(l, ":")
			givesBack := strings.HasSuffix(l, ": release") || strings.HasSuffix(l, ": end of input")
			switch {
			case strings.HasSuffix(head, " (alongside)"):
				// Sent while another command runs (the proof): no
				// round trip of its own; what is pipelined behind it
				// ends with that command's.
				alongside = true
			case !strings.HasSuffix(head, " (pipelined)"):
				trip(givesBack)
				alongside = false
			case givesBack && !backs:
				// Behind the trip's step: that trip gives it back.
				backs = true
				trailing = 1
			}
			if strings.HasSuffix(l, ": release") {
				releasedAlongside = alongside
			}
		case strings.HasPrefix(l, "+ NIX_SSHOPTS=") && strings.Contains(l, " copy "):
			tr.copies++
			trip(false)
		}
	}
	tr.endTrips = trailing
	if releasedAlongside {
		tr.endTrips = 1
	}
	return tr
}

func (tr sshTrace) String() string {
	short := func(l string) string {
		if len(l) > 160 {
			return l[:160] + "..."
		}
		return l
	}
	var b strings.Builder
	for _, l := range tr.sessions {
		b.WriteString(short(l) + "\n")
	}
	for _, l := range tr.requests {
		b.WriteString(short(l) + "\n")
	}
	return b.String()
}

// A supervised deploy of one host runs at most two ssh commands (the host
// session, which the probe opens, and the fresh-connection confirmation)
// besides the copy; a plain one runs one. A supervised deploy knows its
// result after at most five sequential round trips: the probe (the
// session's first request); the lock, the state read again and the store
// query (sent at once); the copy (the missing paths as one stream, one
// nix-store --import); the supervisor's start, the following of the
// activation and the health (failed units and the first attempt of each
// check, run by the host as soon as the activation has ended), at once;
// the confirmation over a fresh connection, alongside which the session
// is given what gives the host back once the supervisor has ended (a
// wait, then the boot state, the GC root's removal and the release):
// five in all. A plain one (a
// first deploy, --magic-rollback=false, --mode test) takes four in all:
// the probe; the lock and query; the copy; the profile and the activation
// as one step, with the boot state, the GC root's removal and the release
// sent behind it.
func TestDeployOpensFewSSHSessions(t *testing.T) {
	// requests are the requests on the host's session: the probe's
	// state, then lock, state and store query, then the activation's
	// steps, the boot state, the GC root's removal and the release.
	tests := []struct {
		name     string
		args     []string
		sessions int
		requests int
		trips    int // in all, the one that gives the host back included
	}{
		{"first deploy (plain: nothing to roll back to)", nil, 1, 8, 4},
		{"supervised switch", nil, 2, 11, 5},
		{"plain switch", []string{"--magic-rollback=false"}, 1, 8, 4},
		{"test mode", []string{"--mode", "test"}, 1, 8, 4},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			flake := writeFlake(t, host("trips1", "generation = "+string(rune('1'+i))+";"))
			r := skiff(t, append([]string{"-x", "deploy", "trips1", "--flake", flake}, tc.args...)...)
			wantCode(t, r, 0)
			tr := sshTraceOf(r.stderr)
			t.Logf("%d ssh sessions, %d session requests, %d copies, %d round trips (%d at the end):\n%s", len(tr.sessions), len(tr.requests), tr.copies, tr.trips, tr.endTrips, tr)
			if len(tr.sessions) > tc.sessions {
				t.Errorf("%d ssh sessions, want at most %d:\n%s", len(tr.sessions), tc.sessions, tr)
			}
			if len(tr.requests) > tc.requests {
				t.Errorf("%d requests on the host's session, want at most %d:\n%s", len(tr.requests), tc.requests, tr)
			}
			if tr.copies != 1 {
				t.Errorf("%d copies, want 1", tr.copies)
			}
			if tr.endTrips != 1 {
				t.Errorf("the host is not given back in one round trip at the end (the release is not in the last one):\n%s", tr)
			}
			if tr.trips > tc.trips {
				t.Errorf("%d sequential round trips in all, want at most %d:\n%s", tr.trips, tc.trips, tr)
			}
		})
	}
}

// A plain activation that fails is undone on the host in the same step,
// before the release sent behind it: the deploy still takes four round
// trips, the host runs and boots what it did before, the failed generation
// is gone and the lock is free. skiff rollback without a supervisor
// switches and activates in one step the same way, and a generation that
// fails to activate returns the host to the one it ran.
func TestPlainActivationFailureIsUndoneInOneStep(t *testing.T) {
	const h = "plainfail1"
	l := newLab(t, lab.HostSpec{Name: h})
	deployOK(t, l, h, 1, "")
	good := running(t, l, h)

	r := skiffOn(t, l, "-x", "deploy", h, "--magic-rollback=false", "--flake", writeFlake(t, host(h, "generation = 2; activationFails = true;")))
	wantCode(t, r, 4)
	wantContains(t, "error", r.stderr, "skiff: error: "+h+": switch-to-configuration switch exited with 2 (the activation script failed); rolled back to generation 1")
	wantContains(t, "progress", r.stderr, "system profile at generation 2", "activation failed; restoring the previous system", "rolled back to generation 1")
	tr := sshTraceOf(r.stderr)
	if tr.trips > 4 || tr.endTrips != 1 {
		t.Errorf("%d round trips (%d at the end), want at most 4 with the release in the last:\n%s", tr.trips, tr.endTrips, tr)
	}
	if cur, prof := running(t, l, h), profile(t, l, h); cur != good || prof != "system-1-link" {
		t.Errorf("running %q with profile %q, want generation 1 (%s)", cur, prof, good)
	}
	if got := generationsOn(t, l, h); got != "system-1-link" {
		t.Errorf("generations %q, want only generation 1 (the failed one deleted)", got)
	}
	if got := labHost(t, l, h, "readlink", "-f", "/nix/var/lab/boot-default"); got != good {
		t.Errorf("boot default %q, want generation 1", got)
	}
	if out, err := l.Host(h).Exec(t.Context(), "test", "-e", "/run/skiff/lock"); err == nil {
		t.Errorf("the deploy lock is still there: %s", out)
	}
	if roots := rootsOn(t, l, h); len(roots) != 0 {
		t.Errorf("GC roots left: %v", roots)
	}

	// Generation 2 fails to activate but is in the profile (--mode boot
	// does not activate); generation 3 runs.
	r = skiffOn(t, l, "deploy", h, "--mode", "boot", "--flake", writeFlake(t, host(h, "generation = 2; activationFails = true;")))
	wantCode(t, r, 0)
	flake := writeFlake(t, host(h, "generation = 3;"))
	r = skiffOn(t, l, "deploy", h, "--magic-rollback=false", "--flake", flake)
	wantCode(t, r, 0)
	third := running(t, l, h)

	r = skiffOn(t, l, "-x", "rollback", h, "--magic-rollback=false", "--flake", flake)
	wantCode(t, r, 4)
	wantContains(t, "error", r.stderr, "switch-to-configuration switch of generation 2 exited with 2", "rolled back to generation 3 ("+third+")")
	if n := strings.Count(r.stderr, "switch-to-configuration'"); n != 0 {
		t.Errorf("switch-to-configuration ran as a step of its own %d times (want it inside the one step)", n)
	}
	if cur, prof := running(t, l, h), profile(t, l, h); cur != third || prof != "system-3-link" {
		t.Errorf("running %q with profile %q, want generation 3 (%s)", cur, prof, third)
	}
	if got := generationsOn(t, l, h); got != "system-1-link system-2-link system-3-link" {
		t.Errorf("generations %q: a rollback deletes none", got)
	}
	if got := labHost(t, l, h, "readlink", "-f", "/nix/var/lab/boot-default"); got != third {
		t.Errorf("boot default %q, want generation 3", got)
	}
}
