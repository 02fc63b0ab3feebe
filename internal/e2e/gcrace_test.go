package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/lab"
)

// rootsOn lists the deploys' GC roots on a lab host.
func rootsOn(t *testing.T, l *lab.Lab, name string) []string {
	t.Helper()
	out, _ := l.Host(name).Exec(context.Background(), "sh", "-c", "ls /run/skiff/roots 2>/dev/null || true")
	return strings.Fields(out)
}

// A gc looping as aggressively as it can while ten deploys alternate
// between two systems never breaks a deploy: gc waits for (skips) a host
// whose deploy lock a deploy holds, deploys wait for a gc holding it, and
// the system being deployed is rooted on the host from the store query on.
func TestGCLoopDuringDeploysNeverTakesTheDeployedSystem(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "race1"})
	// The activation takes a while, so that gc runs meet a held lock.
	systems := []string{
		writeFlake(t, host("race1", "generation = 1; activationDelay = 2;")),
		writeFlake(t, host("race1", "generation = 2; activationDelay = 2;")),
	}
	var (
		mu                       sync.Mutex
		runs, collected, skipped int
		others                   []string
		stop                     = make(chan struct{})
		done                     = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := skiffOn(t, l, "gc", "race1", "--keep", "0", "--flake", systems[0])
			mu.Lock()
			runs++
			switch {
			case r.code == 0:
				collected++
			case r.code == 3 && strings.Contains(r.stderr, "skipped: a deploy holds the host's deploy lock: "):
				skipped++
			default:
				others = append(others, fmt.Sprintf("exit %d: %s", r.code, r.stderr))
			}
			mu.Unlock()
		}
	}()
	stopGC := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}
	defer stopGC()

	for i := range 10 {
		r := skiffOn(t, l, "deploy", "race1", "--flake", systems[i%2])
		if r.code != 0 {
			t.Errorf("deploy %d: exit %d\n%s", i+1, r.code, r.stderr)
		}
	}
	mu.Lock()
	during := runs
	mu.Unlock()
	stopGC()

	t.Logf("gc ran %d times during the deploys (%d in all): %d collected, %d skipped the locked host", during, runs, collected, skipped)
	if during < 3 {
		t.Errorf("gc ran only %d times during the ten deploys", during)
	}
	if collected == 0 {
		t.Error("no gc run collected anything")
	}
	if skipped == 0 {
		t.Error("no gc run met a deploy holding the host's lock")
	}
	for _, o := range others {
		t.Errorf("gc failed otherwise: %s", o)
	}
	// The host ends on the last deployed system (generation 2).
	cur := strings.TrimSpace(labHost(t, l, "race1", "readlink", "/run/current-system"))
	if gen := strings.TrimSpace(labHost(t, l, "race1", "cat", cur+"/etc/lab/generation")); gen != "2" {
		t.Errorf("runs generation %q of the lab systems, want 2", gen)
	}
	if prof := strings.TrimSpace(labHost(t, l, "race1", "readlink", "-f", "/nix/var/nix/profiles/system")); prof != cur {
		t.Errorf("profile %s, running %s", prof, cur)
	}
	if _, err := l.Host("race1").Exec(context.Background(), "nix-store", "--verify-path", cur); err != nil {
		t.Errorf("the running system is not valid: %v", err)
	}
	if roots := rootsOn(t, l, "race1"); len(roots) != 0 {
		t.Errorf("GC roots left after the deploys: %v", roots)
	}
}

// gc meeting a deploy that holds the host's lock skips the host, naming
// who holds it, and changes nothing there; the deploy's GC root exists
// while it runs and is gone when it ends, however it ends.
func TestGCSkipsAHostADeployHoldsAndTheRootGoesWithTheDeploy(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "gclock1"})
	deployOK(t, l, "gclock1", 1, "")
	wantCode(t, skiffOn(t, l, "deploy", "gclock1", "--flake", writeFlake(t, host("gclock1", "generation = 2;"))), 0)
	if roots := rootsOn(t, l, "gclock1"); len(roots) != 0 {
		t.Errorf("GC roots left after a deploy: %v", roots)
	}

	slow := writeFlake(t, host("gclock1", "generation = 3; activationDelay = 5;"))
	first := make(chan result, 1)
	go func() { first <- skiffOn(t, l, "deploy", "gclock1", confirm, "--flake", slow) }()
	held := false
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && !held; time.Sleep(100 * time.Millisecond) {
		// The deploy holds the lock from its store query on; wait for
		// its activation, which comes after the copy.
		_, err := l.Host("gclock1").Exec(context.Background(), "sh", "-c", "test -d /run/skiff/lock && grep -qx activating /run/skiff/act-*/state")
		held = err == nil
	}
	if !held {
		t.Fatal("the deploy never took the lock")
	}
	// The deploy's root points at the system it deploys, through an
	// indirect root Nix honours.
	roots := rootsOn(t, l, "gclock1")
	if len(roots) != 1 {
		t.Errorf("GC roots during the deploy: %v, want one", roots)
	} else {
		target := strings.TrimSpace(labHost(t, l, "gclock1", "readlink", "/run/skiff/roots/"+roots[0]))
		if gen := strings.TrimSpace(labHost(t, l, "gclock1", "cat", target+"/etc/lab/generation")); gen != "3" {
			t.Errorf("the root points at %s (generation %q), want the new system", target, gen)
		}
		auto := labHost(t, l, "gclock1", "sh", "-c", "readlink /nix/var/nix/gcroots/auto/*")
		wantContains(t, "auto roots", auto, "/run/skiff/roots/"+roots[0])
	}
	before := generationsOn(t, l, "gclock1")

	r := skiffOn(t, l, "gc", "gclock1", "--keep", "0", "--flake", slow)
	wantCode(t, r, 3)
	me, _ := os.Hostname()
	wantContains(t, "gc error", r.stderr, "skiff: error: gclock1: skipped: a deploy holds the host's deploy lock: ",
		fmt.Sprintf("(pid %d, since ", os.Getpid()), "skiff: hint: run skiff gc again once it has finished")
	if me != "" {
		wantContains(t, "gc error", r.stderr, "@"+me)
	}
	wantContains(t, "gc table", r.stdout, "gclock1", "skipped")
	r = skiffOn(t, l, "gc", "gclock1", "--keep", "0", "--json", "--flake", slow)
	wantCode(t, r, 3)
	wantContains(t, "gc --json", r.stdout, `"lockedBy": "`)
	if got := generationsOn(t, l, "gclock1"); got != before {
		t.Errorf("a skipped gc changed the generations: %q, was %q", got, before)
	}

	wantCode(t, <-first, 0)
	if roots := rootsOn(t, l, "gclock1"); len(roots) != 0 {
		t.Errorf("GC roots left after the deploy: %v", roots)
	}
	// Now gc runs: the lock is free.
	wantCode(t, skiffOn(t, l, "gc", "gclock1", "--keep", "0", "--flake", slow), 0)

	// Other modes and endings leave no root either.
	wantCode(t, skiffOn(t, l, "deploy", "gclock1", "--mode", "dry-activate", "--flake", writeFlake(t, host("gclock1", "generation = 4;"))), 0)
	wantCode(t, skiffOn(t, l, "deploy", "gclock1", "--mode", "boot", "--flake", writeFlake(t, host("gclock1", "generation = 5;"))), 0)
	wantCode(t, skiffOn(t, l, "deploy", "gclock1", "--flake", writeFlake(t, host("gclock1", "generation = 6; activationFails = true;"))), 4)
	wantCode(t, skiffOn(t, l, "diff", "gclock1", "--flake", writeFlake(t, host("gclock1", "generation = 7;"))), 0)
	if roots := rootsOn(t, l, "gclock1"); len(roots) != 0 {
		t.Errorf("GC roots left after dry-activate, boot, a rolled back deploy and diff: %v", roots)
	}

	// Roots left by killed deployers: one two days old goes with the next
	// deploy's query, a recent one (its deploy may still copy) stays.
	labHost(t, l, "gclock1", "sh", "-c", `cur=$(readlink /run/current-system) &&
ln -s "$cur" /run/skiff/roots/killed-long-ago && touch -h -d "2 days ago" /run/skiff/roots/killed-long-ago &&
ln -s "$cur" /run/skiff/roots/still-copying`)
	deployOK(t, l, "gclock1", 8, "")
	if roots := rootsOn(t, l, "gclock1"); !slices.Equal(roots, []string{"still-copying"}) {
		t.Errorf("GC roots after sweeping: %v, want only the recent one", roots)
	}
}

// A commit whose nix-env cannot set the system profile says why, in
// nix-env's words, not only that it failed. (The health check, run just
// before the commit, makes the profiles read-only.)
func TestFailedCommitCarriesNixEnvsReason(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "commit1"})
	deployOK(t, l, "commit1", 1, "")
	r := skiffOn(t, l, "deploy", "commit1", confirm, "--flake", writeFlake(t, host("commit1",
		`generation = 2; deployment.healthChecks = { commands = [ "mount --bind /nix/var/nix/profiles /nix/var/nix/profiles && mount -o remount,bind,ro /nix/var/nix/profiles" ]; };`)))
	labHost(t, l, "commit1", "umount", "/nix/var/nix/profiles")
	wantCode(t, r, 4)
	wantContains(t, "error", r.stderr, "skiff: error: commit1: setting the system profile failed: error: ", "Read-only file system")
	if got := profile(t, l, "commit1"); got != "system-1-link" {
		t.Errorf("profile %q, want system-1-link", got)
	}
}
