package activate

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func testPlan() Plan {
	return Plan{ID: "20261127T074500-abcd", New: "/nix/store/new-sys", Old: "/nix/store/old-sys", Window: 2500 * time.Millisecond}
}

func TestLaunchArgvPicksSystemdRunOrSetsid(t *testing.T) {
	p := testPlan()
	sd, err := LaunchArgv(p, true)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := LaunchArgv(p, false)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"/run/skiff/act-20261127T074500-abcd", "/nix/store/new-sys", "/nix/store/old-sys", "3", ""}
	sup := append([]string{"/bin/sh", "-c", Supervisor, "skiff-supervisor"}, args...)
	head := []string{"sh", "-c", launchScript, "sh", "/run/skiff/act-20261127T074500-abcd"}

	// systemd expands "$" on a unit's command line: the script goes into
	// a file, and the unit's command line has no "$".
	wantSD := append([]string{"sh", "-c", launchFileScript, "sh", "/run/skiff/act-20261127T074500-abcd", Supervisor,
		"systemd-run", "--unit=skiff-activate-20261127T074500-abcd",
		"--description=skiff activation 20261127T074500-abcd", "--collect", "--no-ask-password", "--quiet",
		"--service-type=exec", "--property=KillMode=process", "--setenv=PATH", "--setenv=LOCALE_ARCHIVE", "--",
		"/bin/sh", "/run/skiff/act-20261127T074500-abcd/supervisor"}, args...)
	if d := cmp.Diff(wantSD, sd); d != "" {
		t.Errorf("systemd argv (-want +got):\n%s", d)
	}
	for _, a := range sd[slices.Index(sd, "systemd-run"):] {
		if strings.ContainsAny(a, "$%") {
			t.Errorf("systemd would rewrite %q on the unit's command line", a)
		}
	}
	wantPlain := append(append(slices.Clone(head), "setsid", "-f"), sup...)
	if d := cmp.Diff(wantPlain, plain); d != "" {
		t.Errorf("detached argv (-want +got):\n%s", d)
	}

	p.Generation = 41
	rb, _ := LaunchArgv(p, false)
	if rb[len(rb)-1] != "41" {
		t.Errorf("rollback to a generation passes %q, want 41", rb[len(rb)-1])
	}
	// --install-bootloader: the profile argument (empty: the system
	// profile), then INSTALL.
	p.InstallBootloader = true
	for _, systemd := range []bool{true, false} {
		argv, _ := LaunchArgv(p, systemd)
		if d := cmp.Diff([]string{"41", "", "1"}, argv[len(argv)-3:]); d != "" {
			t.Errorf("systemd %v: the last arguments (-want +got):\n%s", systemd, d)
		}
	}
}

func TestLaunchArgvRefusesBadPlans(t *testing.T) {
	for _, p := range []Plan{
		{ID: "x; rm -rf /", New: "/nix/store/a"},
		{ID: "ok", New: "relative"},
		{ID: "", New: "/nix/store/a"},
		{ID: "ok", New: "/nix/store/a-$HOME"},
		{ID: "ok", New: "/nix/store/a", Old: "/nix/store/b-${PATH}"},
	} {
		if _, err := LaunchArgv(p, false); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}

func TestParseState(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want State
	}{
		{"\n0\n", State{Output: []byte{}}},
		{"activating\n1\nstopping...\n", State{Phase: "activating", Running: true, Output: []byte("stopping...\n")}},
		{"activated 4\n1\n", State{Phase: "activated", Code: 4, Running: true, Output: []byte{}}},
		{"committed system-7-link\n0\n", State{Phase: "committed", Link: "system-7-link", Output: []byte{}}},
		{"rolled-back 0 not confirmed within 3s: the deployer vanished\n0\n", State{Phase: "rolled-back", Reason: "not confirmed within 3s: the deployer vanished", Output: []byte{}}},
		{"stranded lost SSH access\n0\n", State{Phase: "stranded", Reason: "lost SSH access", Output: []byte{}}},
	} {
		got := ParseState([]byte(tc.in))
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%q (-want +got):\n%s", tc.in, d)
		}
	}
	if g := ParseState([]byte("committed system-12-link\n0\n")).Generation(); g != 12 {
		t.Errorf("generation %d", g)
	}
}

func TestNewlyFailed(t *testing.T) {
	got := NewlyFailed([]string{"old.service"}, []string{"web.service", "old.service", "noise.service", "db.service"}, []string{"noise.service"})
	if d := cmp.Diff([]string{"db.service", "web.service"}, got); d != "" {
		t.Error(d)
	}
	if andList(got) != "db.service and web.service" {
		t.Error(andList(got))
	}
}

func TestScriptsTakeDataAsArguments(t *testing.T) {
	// The fixed scripts never contain a store path or an id: data travels
	// as positional arguments.
	for _, s := range []string{Supervisor, launchScript, launchFileScript, statusScript, decideScript, detectScript} {
		if strings.Contains(s, "/nix/store") || strings.Contains(s, "%") && !strings.Contains(s, "printf") {
			t.Errorf("script embeds data:\n%s", s)
		}
	}
}

// A host's own magic rollback and confirm window (deploy-rs's) apply
// where the command line did not set them, and only there.
func TestOptionsForHost(t *testing.T) {
	no := false
	o := Options{MagicRollback: true, ConfirmTimeout: DefaultConfirmTimeout}
	if got := o.ForHost(nil, 0); got.MagicRollback != true || got.Confirm() != DefaultConfirmTimeout {
		t.Errorf("no host setting: got %+v", got)
	}
	if got := o.ForHost(&no, 45*time.Second); got.MagicRollback || got.Confirm() != 45*time.Second {
		t.Errorf("host settings: got %+v", got)
	}
	o.Given = Given{MagicRollback: true, ConfirmTimeout: true}
	if got := o.ForHost(&no, 45*time.Second); !got.MagicRollback || got.Confirm() != DefaultConfirmTimeout {
		t.Errorf("the command line's flags: got %+v", got)
	}
	if !o.MagicRollback {
		t.Error("ForHost changed the options it was called on")
	}
}
