package remote

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/fault"
)

func TestParseState(t *testing.T) {
	demo := Unit{Unit: "demo.service", Load: "loaded", Active: "failed", Sub: "failed", Description: "Demo"}
	tests := []struct {
		name string
		out  string
		want State
	}{
		{"running its profile", "current=/nix/store/aaa-nixos-system-web1\nbooted=\nlink=system-7-link\nprofile=/nix/store/aaa-nixos-system-web1\n",
			State{Current: "/nix/store/aaa-nixos-system-web1", Profile: "/nix/store/aaa-nixos-system-web1", Generation: 7,
				Boot: Boot{Current: "/nix/store/aaa-nixos-system-web1"}}},
		{"fresh host", "current=\nbooted=\nlink=\nprofile=/nix/var/nix/profiles/system\n", State{}},
		{"systemd with a failed unit", "current=/nix/store/aaa\nlink=\nsystemd=1\nstate=degraded\n" +
			`units=[{"unit":"demo.service","load":"loaded","active":"failed","sub":"failed","description":"Demo","extra":1},{"unit":"ok.service","load":"loaded","active":"active","sub":"running","description":"OK"}]` + "\n",
			State{Current: "/nix/store/aaa", Systemd: true, Systemctl: true, FailedUnits: []string{"demo.service"},
				Health: Health{State: "degraded", Failed: []Unit{demo}}, Boot: Boot{Current: "/nix/store/aaa"}}},
		{"no failed units", "current=\nstate=running\nunits=\n", State{Systemctl: true, Health: Health{State: "running", Failed: []Unit{}}}},
		{"systemctl without JSON", "current=\nstate=degraded\nunits=\nunit=demo.service\tloaded\tfailed\tfailed\tDemo\n",
			State{Systemctl: true, FailedUnits: []string{"demo.service"}, Health: Health{State: "degraded", Failed: []Unit{demo}}}},
		{"booted an older kernel", "current=/s/new\nbooted=/s/old\nlink=system-3-link\nprofile=/s/new\nboot_id=b1\n" +
			"current=/s/new\nbooted=/s/old\nbooted_kernel=/k1\ncurrent_kernel=/k2\n",
			State{Current: "/s/new", Booted: "/s/old", Profile: "/s/new", Generation: 3,
				Boot: Boot{ID: "b1", Current: "/s/new", Booted: "/s/old", Differ: []string{"kernel"}}}},
		{"generations", "current=/s/c\nbooted=/s/b\nlink=system-3-link\nprofile=/s/c\n" +
			"gen=10\t1700000900\t/s/x\t\ngen=2\t1700000000\t/s/b\t24.05.lab\ngen=3\t1700000500\t/s/c\t24.05.lab\ngen=bad\t1\t/s/y\t\n",
			State{Current: "/s/c", Booted: "/s/b", Profile: "/s/c", Generation: 3, Boot: Boot{Current: "/s/c", Booted: "/s/b"},
				Gens: []Generation{
					{Number: 2, Date: time.Unix(1700000000, 0).UTC(), Path: "/s/b", NixOSVersion: "24.05.lab", Booted: true},
					{Number: 3, Date: time.Unix(1700000500, 0).UTC(), Path: "/s/c", NixOSVersion: "24.05.lab", Current: true, BootDefault: true},
					{Number: 10, Date: time.Unix(1700000900, 0).UTC(), Path: "/s/x"},
				}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := parseState(tc.out)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, st); d != "" {
				t.Error(d)
			}
		})
	}
	if _, err := parseState("current=\nnix=missing\n"); err == nil {
		t.Error("missing nix not reported")
	}
}

func TestProfileGens(t *testing.T) {
	st, err := parseState("link=system-3-link\ngen=10\t1\t/s/c\t\ngen=2\t1\t/s/a\t\ngen=3\t1\t/s/b\t\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []ProfileGen{{2, "/s/a"}, {3, "/s/b"}, {10, "/s/c"}}
	if d := cmp.Diff(want, st.ProfileGens()); d != "" {
		t.Error(d)
	}
}

// TestStateScript runs the state script (system.sh and reboot.sh) under
// dash against a fake root with a system profile of three generations,
// one a dangling link, after a deploy in mode test: the host runs a
// system no generation holds.
func TestStateScript(t *testing.T) {
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Skip("dash is not installed")
	}
	root := t.TempDir()
	store := filepath.Join(root, "store")
	profiles := filepath.Join(root, "nix/var/nix/profiles")
	for _, d := range []string{"store/a", "store/b", "store/t", "store/ka", "store/kt", "run/systemd/system", "nix/var/nix/profiles"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(store, f, "nixos-version"), []byte("24.05."+f+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, path string, mtime int64) {
		t.Helper()
		p := filepath.Join(root, path)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		if mtime > 0 {
			tm := time.Unix(mtime, 0)
			if err := exec.Command("touch", "-h", "-d", tm.Format(time.RFC3339), p).Run(); err != nil {
				t.Fatal(err)
			}
		}
	}
	link(store+"/a", "nix/var/nix/profiles/system-1-link", 1700000000)
	link(store+"/b", "nix/var/nix/profiles/system-2-link", 1700000500)
	link(store+"/gone", "nix/var/nix/profiles/system-10-link", 1700000900)
	link("system-2-link", "nix/var/nix/profiles/system", 0)
	link(store+"/a", "run/booted-system", 0)
	link(store+"/t", "run/current-system", 0)
	// The running system's kernel is not the booted one's.
	link(store+"/ka", "store/a/kernel", 0)
	link(store+"/kt", "store/t/kernel", 0)
	_ = profiles
	_, err = exec.LookPath("systemd-run")
	systemd := err == nil

	run := func(args ...string) State {
		t.Helper()
		out, err := exec.Command(dash, append([]string{"-c", stateScript, "sh", root}, args...)...).Output()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		st, err := parseState(string(out))
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return st
	}
	st := run("gens")
	st.Boot.ID = ""
	want := State{Current: store + "/t", Booted: store + "/a", Profile: store + "/b", Generation: 2, Systemd: systemd,
		Boot: Boot{Current: store + "/t", Booted: store + "/a", Differ: []string{"kernel"}},
		Gens: []Generation{
			{Number: 1, Date: time.Unix(1700000000, 0).UTC(), Path: store + "/a", NixOSVersion: "24.05.a", Booted: true},
			{Number: 2, Date: time.Unix(1700000500, 0).UTC(), Path: store + "/b", NixOSVersion: "24.05.b", BootDefault: true},
			{Number: 10, Date: time.Unix(1700000900, 0).UTC(), Path: store + "/gone"},
		}}
	if d := cmp.Diff(want, st); d != "" {
		t.Error(d)
	}
	// The generations cost one readlink and one stat, however many.
	calls := filepath.Join(t.TempDir(), "calls")
	bin := t.TempDir()
	for _, tool := range []string{"readlink", "stat"} {
		real, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		wrapper := "#!/bin/sh\necho \"" + tool + " $*\" >>" + calls + "\nexec " + real + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(bin, tool), []byte(wrapper), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(dash, "-c", stateScript, "sh", root, "gens")
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got, err := parseState(string(out)); err != nil || !cmp.Equal(got.Gens, want.Gens) {
		t.Errorf("with the wrappers: %v %s", err, cmp.Diff(want.Gens, got.Gens))
	}
	log, _ := os.ReadFile(calls)
	per := 0
	for _, l := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		if strings.Contains(l, "-link") && !strings.HasSuffix(l, "profiles/system") {
			per++
		}
	}
	if per != 2 {
		t.Errorf("%d readlink and stat runs for the generations, want 2 (one each):\n%s", per, log)
	}
	// The links once each (reboot.sh takes system.sh's), the profile's
	// end, the generations, and the parts of the booted and the running
	// system.
	if n := strings.Count(string(log), "readlink "); n != 6 {
		t.Errorf("%d readlink runs in the state read, want 6:\n%s", n, log)
	}
	// A readlink and a stat that take one file only (BusyBox's readlink):
	// each link is read on its own, to the same lines.
	one := t.TempDir()
	for _, tool := range []string{"readlink", "stat"} {
		real, _ := exec.LookPath(tool)
		wrapper := "#!/bin/sh\nfor a; do case $a in /*) n=$((${n:-0}+1)) ;; esac; done\n[ \"${n:-0}\" -le 1 ] || exit 1\nexec " + real + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(one, tool), []byte(wrapper), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd = exec.Command(dash, "-c", stateScript, "sh", root, "gens")
	cmd.Env = append(os.Environ(), "PATH="+one+":"+os.Getenv("PATH"))
	if out, err = cmd.Output(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got, err := parseState(string(out)); err != nil || !cmp.Equal(got.Gens, want.Gens) {
		t.Errorf("with one file a run: %v %s", err, cmp.Diff(want.Gens, got.Gens))
	}
	if st.UpToDate("switch", store+"/t") || !st.UpToDate("test", store+"/t") {
		t.Errorf("after a deploy in mode test: %+v", st)
	}
	if got := run(); got.Gens != nil || got.Generation != 2 {
		t.Errorf("without gens: %+v", got)
	}
	// The links and the boot state: systemd is not asked, no
	// generations are listed.
	links := State{Current: store + "/t", Booted: store + "/a", Profile: store + "/b", Generation: 2,
		Boot: Boot{Current: store + "/t", Booted: store + "/a", Differ: []string{"kernel"}}}
	got := run("links")
	if got.Boot.ID == "" {
		t.Errorf("links: no boot id")
	}
	got.Boot.ID = ""
	if d := cmp.Diff(links, got); d != "" {
		t.Errorf("links: %s", d)
	}
}

func TestStateScriptShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Skip("shellcheck is not installed")
	}
	out, err := exec.Command("shellcheck", "-S", "warning", "-s", "sh", "system.sh").CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck system.sh: %v\n%s", err, out)
	}
}

func TestUpToDate(t *testing.T) {
	const out = "/nix/store/new"
	running := State{Current: out, Profile: out, Generation: 3}
	testOnly := State{Current: out, Profile: "/nix/store/old", Generation: 2}
	bootOnly := State{Current: "/nix/store/old", Profile: out, Generation: 3}
	for _, tc := range []struct {
		mode string
		st   State
		want bool
	}{
		{"switch", running, true},
		{"switch", testOnly, false}, // running but not the boot default
		{"switch", bootOnly, false},
		{"boot", bootOnly, true},
		{"boot", testOnly, false},
		{"test", testOnly, true},
		{"test", bootOnly, false},
		{"dry-activate", running, false},
		{"switch", State{}, false},
	} {
		if got := tc.st.UpToDate(tc.mode, out); got != tc.want {
			t.Errorf("UpToDate(%s, %+v) = %v, want %v", tc.mode, tc.st, got, tc.want)
		}
	}
}

// The failed units come on one line, as systemctl prints its JSON; one
// that comes on several lines is joined by the shell: no tr, no process.
func TestStateScriptPutsTheUnitsOnOneLine(t *testing.T) {
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Skip("dash is not installed")
	}
	for _, tc := range []struct{ name, json string }{
		{"one line", `[{"unit":"a.service","active":"failed"}]`},
		{"several lines", "[\n  {\"unit\":\"a.service\",\n   \"active\":\"failed\"}\n]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin, log := loggingBin(t, "tr")
			if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte("#!/bin/sh\ncase $1 in is-system-running) echo degraded ;; list-units) printf '%s\\n' '"+tc.json+"' ;; esac\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(dash, "-c", stateScript, "sh", "")
			cmd.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH")}
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			want := "units=" + strings.NewReplacer("\n", "").Replace(tc.json) + "\n"
			if !strings.Contains(string(out), "\nstate=degraded\n") || !strings.Contains(string(out), "\n"+want) {
				t.Errorf("the state read printed:\n%s\nwant state=degraded and %q", out, want)
			}
			if b, _ := os.ReadFile(log); len(b) > 0 {
				t.Errorf("the state read ran %q", strings.Fields(string(b)))
			}
		})
	}
}

// A state that says the host has no Nix is a fault naming the host, from
// every read of the state (a probe, a read under the lock, the rollback's).
func TestStateOfNamesTheHost(t *testing.T) {
	h := &Host{Name: "web1"}
	_, err := h.stateOf("current=/nix/store/a\nnix=missing\n")
	fe, ok := fault.As(err)
	if !ok || fe.Host != "web1" || fe.Class != fault.Nix {
		t.Errorf("stateOf: %#v, want a nix fault of web1", err)
	}
}
