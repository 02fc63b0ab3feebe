package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/skiffdeploy/skiff/internal/lab"
)

// rewriteFlake replaces the systems of the flake in dir, which stays
// where it is (the same flake reference, as after an edit).
func rewriteFlake(t *testing.T, dir, configs string) {
	t.Helper()
	fresh := writeFlake(t, configs)
	b, err := os.ReadFile(filepath.Join(fresh, "flake.nix"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// importLine is the index in a -x trace of the copy's nix-store --import,
// or -1.
func importLine(stderr string) int {
	for i := 0; i < len(stderr); {
		l, _, _ := strings.Cut(stderr[i:], "\n")
		if strings.HasPrefix(l, "+ ssh ") && strings.Contains(l, "skiff-import") {
			return i
		}
		i += len(l) + 1
	}
	return -1
}

// runRequestRE is the head of a session's run request; the first request
// of a session's command follows the agent's name on its line, after the
// quote that ends the agent's script.
var runRequestRE = regexp.MustCompile(`(?m)^(?: '\\'')?run \d+$`)

// masterLines are the speculative connections of a -x trace (ssh -N).
func masterLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "+ ssh ") && strings.Contains(l, " -N ") {
			out = append(out, l)
		}
	}
	return out
}

// A deploy opens the connection of each host an earlier run of the same
// flake and selection reached while it evaluates (ssh -N: nothing runs on
// the host), and its probe rides it: one login. When the evaluation says
// the host is reached another way, the speculative connection is closed
// and the host is connected to as the evaluation says.
func TestDeployConnectsWhileEvaluating(t *testing.T) {
	dir := writeFlake(t, host("spec1", "generation = 1;"))
	r := skiff(t, "-x", "deploy", "spec1", "--magic-rollback=false", "--flake", dir)
	wantCode(t, r, 0)
	if m := masterLines(r.stderr); len(m) != 0 {
		t.Errorf("first run of a flake opened a speculative connection (nothing is known yet):\n%s", strings.Join(m, "\n"))
	}

	// Which comes first, the connection or the knowledge that the system
	// is built, is still a race: on a loaded machine the connection may win,
	// and the probe reads the state before the session starts. The fast
	// order must come within three deploys.
	var logins, gen int
	for gen = 2; ; gen++ {
		rewriteFlake(t, dir, host("spec1", fmt.Sprintf("generation = %d;", gen)))
		// Built first: on a fresh store the build would race the
		// connection too (this store may have built the generation in an
		// earlier run, or not).
		wantCode(t, skiff(t, "build", "--flake", dir), 0)
		logins = fleet.Host("spec1").Logins("root")
		r = skiff(t, "-x", "deploy", "spec1", "--magic-rollback=false", "--flake", dir)
		wantCode(t, r, 0)
		wantContains(t, "summary", r.stdout, fmt.Sprintf("%d -> %d", gen-1, gen))
		if _, first := sessionOf(r.stderr, "root@spec1"); strings.Contains(first, "lock ") || gen == 4 {
			break
		}
		t.Logf("generation %d: the session did not start with the lock (the connection won the race); deploying again", gen)
	}
	m := masterLines(r.stderr)
	if len(m) != 1 || !strings.HasSuffix(m[0], " -N root@spec1") {
		t.Fatalf("want one speculative connection to root@spec1, got:\n%s", strings.Join(m, "\n"))
	}
	master := strings.Index(r.stderr, m[0])
	probe := strings.Index(r.stderr, "connect: connected")
	if probe < 0 || master > probe {
		t.Errorf("the speculative connection was not opened before the probe:\n%s", r.stderr)
	}
	if got := fleet.Host("spec1").Logins("root") - logins; got != 1 {
		t.Errorf("%d ssh logins, want 1: the probe, the session and the copy ride the speculative connection", got)
	}
	// The lock, then the state read and the store query (one request,
	// run side by side on the host) travel in the session's command:
	// sshd lets no input through before a command has started, so on its
	// input they would wait a round trip more.
	if _, first := sessionOf(r.stderr, "root@spec1"); !strings.Contains(first, "lock 6") || !strings.Contains(first, "\ninput 1\n") || len(runRequestRE.FindAllString(first, -1)) != 1 || !strings.Contains(first, "booted=") {
		t.Errorf("the session's command does not carry the lock, the state read and the store query; it ends:\n%s", first)
	}
	// The host lacks the new generation (the last deploy left it the one before):
	// the copy's import starts with the deploy's first round trip, before
	// the store query has answered.
	imp, copying := importLine(r.stderr), strings.Index(r.stderr, "spec1: copy: copying")
	if imp < 0 || copying < 0 || imp > copying {
		t.Errorf("the import did not start before the store query answered:\n%s", r.stderr)
	}
	// The connection is up and the system built before any probe: the
	// state is read under the lock with the store query, in the
	// deploy's first round trip. To the result: that one, nix copy,
	// the profile, switch-to-configuration.
	tr := sshTraceOf(r.stderr)
	if len(tr.sessions) != 1 || tr.masters != 1 || tr.trips-tr.endTrips > 4 {
		t.Errorf("%d ssh commands, %d speculative connections, %d round trips to the result; want 1, 1, at most 4:\n%s", len(tr.sessions), tr.masters, tr.trips-tr.endTrips, tr)
	}

	// Nothing changed: the last deploy left the host running this
	// system, so its probe reads the links alone, in one ssh command (no
	// session, no lock, no systemctl, no boot read), and they say it is
	// up to date: one round trip, nothing to give back.
	logins = fleet.Host("spec1").Logins("root")
	r = skiff(t, "-x", "deploy", "spec1", "--magic-rollback=false", "--flake", dir)
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "up to date")
	if strings.Contains(r.stderr, "copying") || strings.Contains(r.stderr, "switch-to-configuration") {
		t.Errorf("an up-to-date host was copied to or activated:\n%s", r.stderr)
	}
	if importLine(r.stderr) >= 0 {
		t.Errorf("an import was started for a host the last deploy left running this system:\n%s", r.stderr)
	}
	if tr := sshTraceOf(r.stderr); len(tr.sessions) != 1 || tr.trips != 1 || len(tr.requests) != 0 {
		t.Errorf("up to date: %d ssh commands, %d round trips, %d session requests; want 1, 1, 0:\n%s", len(tr.sessions), tr.trips, len(tr.requests), tr)
	}
	if links := linksRead(r.stderr, "root@spec1"); links == "" || strings.Contains(links, "skiff-session") {
		t.Errorf("an expected no-op did not read the links alone, in a command of its own:\n%s", links)
	}
	if got := fleet.Host("spec1").Logins("root") - logins; got != 1 {
		t.Errorf("an up-to-date deploy made %d ssh logins, want 1", got)
	}
	if out := inHost(t, "spec1", "sh", "-c", "ls /run/skiff/roots; ls -d /run/skiff/lock 2>/dev/null; true"); out != "" {
		t.Errorf("an up-to-date deploy left a GC root or the lock on the host: %q", out)
	}

	// The generation before activated by hand behind skiff's back: the
	// links say the host is not up to date, the whole probe follows (one
	// round trip more), and the deploy activates the last one again.
	inHost(t, "spec1", fmt.Sprintf("/nix/var/nix/profiles/system-%d-link/bin/switch-to-configuration", gen-1), "test")
	r = skiff(t, "-x", "deploy", "spec1", "--magic-rollback=false", "--flake", dir)
	wantCode(t, r, 0)
	wantContains(t, "progress", r.stderr, fmt.Sprintf("; profile at generation %d, running ", gen), "switch-to-configuration switch")
	if linksRead(r.stderr, "root@spec1") == "" {
		t.Errorf("the probe did not read the links first:\n%s", r.stderr)
	}
	if strings.Contains(r.stdout, "up to date") {
		t.Errorf("a host running generation %d was found up to date:\n%s", gen-1, r.stdout)
	}
	if cur, prof := inHost(t, "spec1", "readlink", "/run/current-system"), inHost(t, "spec1", "readlink", fmt.Sprintf("/nix/var/nix/profiles/system-%d-link", gen)); cur != prof {
		t.Errorf("running %q, want generation %d (%q)", cur, gen, prof)
	}

	// The flake now reaches spec1 as deploy: the guess (root) is wrong.
	rewriteFlake(t, dir, host("spec1", fmt.Sprintf(`generation = %d; deployment.targetUser = "deploy";`, gen+1)))
	r = skiff(t, "-x", "deploy", "spec1", "--magic-rollback=false", "--flake", dir)
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, fmt.Sprintf("%d -> %d", gen, gen+1))
	m = masterLines(r.stderr)
	if len(m) != 1 || !strings.HasSuffix(m[0], " -N root@spec1") {
		t.Fatalf("want one speculative connection to root@spec1 (last run's target), got:\n%s", strings.Join(m, "\n"))
	}
	if !strings.Contains(r.stderr, " -O exit root@spec1") {
		t.Errorf("the speculative connection to root@spec1 was not closed:\n%s", r.stderr)
	}
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "+ ssh ") && strings.Contains(l, "root@spec1 --") {
			t.Errorf("a command ran as root@spec1, which the evaluation did not select: %s", l)
		}
	}
	// The next run guesses deploy@spec1.
	rewriteFlake(t, dir, host("spec1", fmt.Sprintf(`generation = %d; deployment.targetUser = "deploy";`, gen+2)))
	r = skiff(t, "-x", "deploy", "spec1", "--magic-rollback=false", "--flake", dir)
	wantCode(t, r, 0)
	if m := masterLines(r.stderr); len(m) != 1 || !strings.HasSuffix(m[0], " -N deploy@spec1") {
		t.Errorf("want one speculative connection to deploy@spec1, got:\n%s", strings.Join(m, "\n"))
	}
	if strings.Contains(r.stderr, " -O exit root@spec1") {
		t.Errorf("a connection to root@spec1 was opened and closed again:\n%s", r.stderr)
	}
}

// linksRead is the first ssh command to login (USER@HOST) in a -x trace
// that reads the links of its state (remote.ReadLinks), its lines joined;
// empty when there is none.
func linksRead(stderr, login string) string {
	lines := strings.Split(stderr, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "+ ssh ") || !strings.Contains(l, " "+login+" -- ") {
			continue
		}
		if text := stepText(lines, i); strings.HasSuffix(text, " links'") {
			return text
		}
	}
	return ""
}

// sessionOf is the session command of login (USER@HOST) in a -x trace:
// its index, and what follows the agent's script in it (the requests that
// travel in the command); -1 when there is none.
func sessionOf(stderr, login string) (int, string) {
	lines := strings.Split(stderr, "\n")
	at := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "+ ssh ") && strings.Contains(l, " "+login+" -- ") && !strings.Contains(l, "skiff-import") {
			text := stepText(lines, i)
			if j := strings.LastIndex(text, "' skiff-session"); j >= 0 {
				return at, text[j+len("' skiff-session"):]
			}
		}
		at += len(l) + 1
	}
	return -1, ""
}

// A host whose deploy waits for an earlier wave has its session started
// when it is connected, its channel open by the time its turn comes (its
// first requests then cost one round trip); a host deployed at once starts
// its session with its first requests, in the agent's command.
func TestLaterWavesOpenTheirSessionsAtConnect(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "wave1"}, lab.HostSpec{Name: "wave2"})
	dir := writeFlake(t, host("wave1", "generation = 1;")+host("wave2", "generation = 1;"))
	args := []string{"deploy", "--magic-rollback=false", "--canary", "1", "wave*", "--flake", dir}
	wantCode(t, skiffOn(t, l, args...), 0) // the next run knows the targets
	rewriteFlake(t, dir, host("wave1", "generation = 2;")+host("wave2", "generation = 2;"))
	r := skiffOn(t, l, append([]string{"-x"}, args...)...)
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "1 -> 2")
	// The canary's first requests: the lock, or the probe's state read
	// when the connection was up before the systems were known built.
	canary, first := sessionOf(r.stderr, "root@wave1")
	if canary < 0 || !strings.Contains(first, "lock 6") && !runRequestRE.MatchString(first) {
		t.Errorf("the canary's session did not start with its first requests; its command ends:\n%s", first)
	}
	later, rest := sessionOf(r.stderr, "root@wave2")
	done := strings.Index(r.stderr, "wave1: done:")
	if later < 0 || done < 0 || later > done || strings.Contains(rest, "lock 6") {
		t.Errorf("the second wave's session was not started, without requests, before the canary was done (at %d, canary done at %d); its command ends:\n%s", later, done, rest)
	}
}
