package doctor

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/transport"
)

func testSession() *session {
	return newSession(Options{}, &localBuild{}, Target{Name: "web1", Target: transport.Target{Host: "web1"}})
}

func statuses(r Report) map[string]Status {
	m := map[string]Status{}
	for _, f := range r.Findings {
		m[f.Check] = f.Status
	}
	return m
}

func TestFailureSkipsDependents(t *testing.T) {
	pass := func(context.Context, *session) Finding { return ok("fine") }
	list := []check{
		{name: "a", run: pass},
		{name: "b", needs: []string{"a"}, run: func(context.Context, *session) Finding {
			return failed(fault.New("web1", fault.Refused, "start sshd", "refused"))
		}},
		{name: "c", needs: []string{"b"}, run: pass},
		{name: "d", needs: []string{"c"}, run: pass}, // skipped through c
		{name: "e", needs: []string{"a"}, run: pass},
		{name: "f", local: true, run: pass},
	}
	r := runHost(t.Context(), Options{Timeout: time.Minute}, list, testSession())
	want := map[string]Status{"a": OK, "b": Fail, "c": Skip, "d": Skip, "e": OK, "f": OK}
	if d := cmp.Diff(want, statuses(r)); d != "" {
		t.Error(d)
	}
	if r.Status != Fail || r.Findings[1].Class != fault.Refused || r.Findings[1].Hint != "start sshd" || r.Findings[3].Detail != "b failed" {
		t.Errorf("report %+v", r)
	}
}

func TestHostTimeLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		list := []check{
			{name: "hang", run: func(ctx context.Context, _ *session) Finding {
				<-ctx.Done()
				return Finding{Status: Fail, Detail: "interrupted"}
			}},
			{name: "next", run: func(context.Context, *session) Finding { return ok("fine") }},
			{name: "local", local: true, run: func(context.Context, *session) Finding { return ok("fine") }},
		}
		start := time.Now()
		r := runHost(t.Context(), Options{Timeout: 5 * time.Second}, list, testSession())
		if took := time.Since(start); took != 5*time.Second {
			t.Errorf("took %s, want the 5s limit", took)
		}
		want := map[string]Status{"hang": Fail, "next": Skip, "local": OK}
		if d := cmp.Diff(want, statuses(r)); d != "" {
			t.Error(d)
		}
		if f := r.Findings[0]; f.Class != fault.Timeout || !strings.Contains(f.Detail, "time limit (5s)") {
			t.Errorf("hung check: %+v", f)
		}
	})
}

func TestConnectTimeout(t *testing.T) {
	for budget, want := range map[time.Duration]time.Duration{
		time.Second: time.Second, 6 * time.Second: 2 * time.Second, 30 * time.Second: 10 * time.Second, time.Hour: 10 * time.Second,
	} {
		if got := connectTimeout(budget); got != want {
			t.Errorf("connectTimeout(%s) = %s, want %s", budget, got, want)
		}
	}
}

func TestNixSystem(t *testing.T) {
	for in, want := range map[[2]string]string{
		{"x86_64", "Linux"}: "x86_64-linux", {"aarch64", "Linux"}: "aarch64-linux",
		{"arm64", "Darwin"}: "aarch64-darwin", {"armv7l", "Linux"}: "armv7l-linux",
	} {
		if got := nixSystem(in[0], in[1]); got != want {
			t.Errorf("nixSystem(%v) = %s, want %s", in, got, want)
		}
	}
}

// The on-host checks read what the login's command printed: sudo's
// answer is classified as a failed sudo -n would be, and the disk hint is
// the run's skiff gc command.
func TestChecksReadTheLoginsFacts(t *testing.T) {
	s := newSession(Options{Flake: "/srv/infra", SSH: transport.Options{ConfigFile: "/lab/ssh_config"}}, &localBuild{},
		Target{Name: "web1", Target: transport.Target{Host: "web1", User: "deploy"}})
	s.login = loginResult{done: true, stdout: "sudo\t1\tsudo: a password is required\n" +
		"df\t/nix/store\t/dev/vda 1048576 1000000 48576 96% /nix\n"}
	f := checkSudo(t.Context(), s)
	if f.Status != Fail || f.Class != fault.Sudo || !strings.Contains(f.Hint, "NOPASSWD") {
		t.Errorf("sudo: %+v", f)
	}
	if st := checkStore(t.Context(), s); st.Status != Skip {
		t.Errorf("store without root: %+v", st)
	}
	d := checkDisk(t.Context(), s)
	if d.Status != Fail || d.Class != fault.Disk || !strings.Contains(d.Hint, `"skiff gc web1 --keep 5 --flake /srv/infra -F /lab/ssh_config"`) {
		t.Errorf("disk: %+v", d)
	}
}

// A system built on a build host, or on the host itself
// (deployment.buildOnTarget), does not depend on what this machine can
// build: the local-build check skips it, without reading nix's
// configuration.
func TestLocalBuildSkipsASystemBuiltElsewhere(t *testing.T) {
	for _, on := range []string{"builder@bld1", "the host itself (deployment.buildOnTarget)"} {
		s := newSession(Options{}, &localBuild{}, Target{Name: "pi1", Target: transport.Target{Host: "pi1"}, System: "aarch64-linux", BuiltOn: on})
		f := checkLocalBuild(t.Context(), s)
		if f.Status != Skip || f.Detail != "built on "+on+", not here" {
			t.Errorf("%s: %+v", on, f)
		}
	}
	s := newSession(Options{}, &localBuild{}, Target{Name: "pi1", Target: transport.Target{Host: "pi1"}, System: "aarch64-linux"})
	if f := checkLocalBuild(t.Context(), s); f.Status == Skip {
		t.Errorf("a system built here was skipped: %+v", f)
	}
}
