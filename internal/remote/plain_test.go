package remote

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeNixEnv keeps a profile of system-N-link links the way nix-env does
// (for --set, --switch-generation and --delete-generations), logging each
// call; --set fails with a full disk when the file "full" exists.
const fakeNixEnv = `#!/bin/sh
P=$2 op=$3 arg=$4
d=$(dirname "$P")
echo "nix-env $op $arg" >>"$d/log"
case $op in
--set)
	if [ -e "$d/full" ]; then echo "error: writing to file: No space left on device" >&2; exit 1; fi
	n=1
	while [ -e "$P-$n-link" ] || [ -L "$P-$n-link" ]; do n=$((n + 1)); done
	ln -s "$arg" "$P-$n-link" && ln -sfn "system-$n-link" "$P" ;;
--switch-generation)
	[ -L "$P-$arg-link" ] || { echo "error: generation $arg does not exist" >&2; exit 1; }
	ln -sfn "system-$arg-link" "$P" ;;
--delete-generations)
	rm -f "$P-$arg-link" ;;
esac
`

// fakeSystem makes a system at dir/name whose activation (NixOS's
// switch-to-configuration, nix-darwin's activate-user and activate) logs
// its call and exits with code.
func fakeSystem(t *testing.T, dir, name string, code int) string {
	t.Helper()
	sys := filepath.Join(dir, name)
	step := func(file, what string) {
		script := "#!/bin/sh\necho \"" + what + "\" >>" + filepath.Join(dir, "log") + "\necho \"" + what + " says hello\"\nexit " + itoa(code) + "\n"
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	step(filepath.Join(sys, "bin", "switch-to-configuration"), name+" $1${NIXOS_INSTALL_BOOTLOADER:+ install=$NIXOS_INSTALL_BOOTLOADER}")
	step(filepath.Join(sys, "activate"), name+" activate")
	return sys
}

func itoa(n int) string { return strconv.Itoa(n) }

// plain.sh under dash, with a fake nix-env and fake systems: the profile
// first, the activation only when it was set, and a failed activation
// undone on the host (profile restored, the new generation deleted, the
// previous system activated again); the Go side reads the marks.
func TestPlainActivationUnderDash(t *testing.T) {
	if _, err := exec.LookPath("dash"); err != nil {
		t.Skip("no dash")
	}
	tests := []struct {
		name     string
		darwin   bool
		action   string
		gen      string // "new", "N" or ""
		code     int    // the new system's activation exit code
		full     bool   // --set fails: no space left
		first    bool   // no previous system
		install  bool   // INSTALL 1 (--install-bootloader)
		wantLog  []string
		wantLink string // the profile after; "" none
		want     Changed
		wantSet  bool // a profile error, "No space left on device"
	}{
		{name: "switch", action: "switch", gen: "new",
			wantLog:  []string{"nix-env --set NEW", "new switch"},
			wantLink: "system-2-link", want: Changed{Generation: 2, Step: "switch-to-configuration"}},
		{name: "units failed: kept", action: "switch", gen: "new", code: 4,
			wantLog:  []string{"nix-env --set NEW", "new switch"},
			wantLink: "system-2-link", want: Changed{Generation: 2, Activation: Activation{ExitCode: 4}, Step: "switch-to-configuration"}},
		{name: "failed switch is undone", action: "switch", gen: "new", code: 2,
			wantLog: []string{"nix-env --set NEW", "new switch", "nix-env --switch-generation 1", "nix-env --delete-generations 2",
				"old boot", "old test"},
			wantLink: "system-1-link", want: Changed{Activation: Activation{ExitCode: 2}, Step: "switch-to-configuration", RolledBack: true}},
		{name: "the profile fails: nothing activates", action: "switch", gen: "new", full: true,
			wantLog: []string{"nix-env --set NEW"}, wantLink: "system-1-link", wantSet: true},
		{name: "first deploy undone", action: "switch", gen: "new", code: 2, first: true,
			wantLog:  []string{"nix-env --set NEW", "new switch"},
			wantLink: "", want: Changed{Activation: Activation{ExitCode: 2}, Step: "switch-to-configuration", RolledBack: true}},
		{name: "test mode leaves the profile", action: "test", gen: "", code: 2,
			wantLog:  []string{"new test", "old test"},
			wantLink: "system-1-link", want: Changed{Activation: Activation{ExitCode: 2}, Step: "switch-to-configuration", RolledBack: true}},
		{name: "boot mode re-installs the old boot default", action: "boot", gen: "new", code: 1,
			wantLog:  []string{"nix-env --set NEW", "new boot", "nix-env --switch-generation 1", "nix-env --delete-generations 2", "old boot"},
			wantLink: "system-1-link", want: Changed{Activation: Activation{ExitCode: 1}, Step: "switch-to-configuration", RolledBack: true}},
		{name: "rollback to an existing generation, undone", action: "switch", gen: "1", code: 2,
			wantLog:  []string{"nix-env --switch-generation 1", "new switch", "nix-env --switch-generation 2", "old boot", "old test"},
			wantLink: "system-2-link", want: Changed{Activation: Activation{ExitCode: 2}, Step: "switch-to-configuration", RolledBack: true}},
		{name: "the boot loader installed", action: "switch", gen: "new", install: true,
			wantLog:  []string{"nix-env --set NEW", "new switch install=1"},
			wantLink: "system-2-link", want: Changed{Generation: 2, Step: "switch-to-configuration"}},
		{name: "darwin", darwin: true, gen: "new",
			wantLog:  []string{"nix-env --set NEW", "new activate"},
			wantLink: "system-2-link", want: Changed{Generation: 2, Step: "activate"}},
		{name: "darwin failure is undone", darwin: true, gen: "new", code: 1,
			wantLog:  []string{"nix-env --set NEW", "new activate", "nix-env --switch-generation 1", "nix-env --delete-generations 2", "old activate"},
			wantLink: "system-1-link", want: Changed{Activation: Activation{ExitCode: 1}, Step: "activate", RolledBack: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			if err := os.Mkdir(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(bin, "nix-env"), []byte(fakeNixEnv), 0o755); err != nil {
				t.Fatal(err)
			}
			profiles := filepath.Join(dir, "profiles")
			if err := os.Mkdir(profiles, 0o755); err != nil {
				t.Fatal(err)
			}
			P := filepath.Join(profiles, "system")
			oldSys := fakeSystem(t, profiles, "old", 0)
			newSys := fakeSystem(t, profiles, "new", tc.code)
			before := State{}
			if !tc.first {
				before = State{Current: oldSys, Profile: oldSys, Generation: 1}
				must(t, os.Symlink(oldSys, P+"-1-link"))
				must(t, os.Symlink("system-1-link", P))
				if tc.gen == "1" {
					// skiff rollback from generation 2 to 1.
					must(t, os.Symlink(newSys, P+"-2-link"))
					must(t, os.Remove(P))
					must(t, os.Symlink("system-2-link", P))
					before = State{Current: oldSys, Profile: oldSys, Generation: 2}
				}
			}
			if tc.full {
				must(t, os.WriteFile(filepath.Join(profiles, "full"), nil, 0o644))
			}
			kind, action := "nixos", tc.action
			if tc.darwin {
				kind, action = "darwin", "switch"
			}
			args := []string{"-c", plainScript, "skiff-activate", kind, P, newSys, action, tc.gen,
				itoa(before.Generation), before.Profile, before.Current}
			if tc.install {
				args = append(args, "1")
			}
			cmd := exec.Command("dash", args...)
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
			rolled := 0
			w := &changeWriter{out: &strings.Builder{}, mark: func(verb, _ string) {
				if verb == "rollback" {
					rolled++
				}
			}}
			cmd.Stdout, cmd.Stderr = w, w
			err := cmd.Run()
			w.flush()
			c := Change{Darwin: tc.darwin, Toplevel: newSys, Action: action, NewGeneration: tc.gen == "new", Before: before}
			got, told, setErr := parseChange(c, w.marks, w.output.String())
			if !told {
				t.Fatalf("the script did not say how it ended (%v); marks %q", err, w.marks)
			}
			if tc.wantSet != (setErr != nil) || (setErr != nil && !strings.Contains(setErr.Stderr, "No space left on device")) {
				t.Errorf("profile error %v, want one: %v", setErr, tc.wantSet)
			}
			if got.Activation.ExitCode != 0 && (err == nil || !strings.Contains(err.Error(), "exit status "+itoa(got.ExitCode))) {
				t.Errorf("script ended with %v, want the activation's exit code %d", err, got.ExitCode)
			}
			if rolled != 0 != tc.want.RolledBack {
				t.Errorf("rollback hook called %d times, want it when rolling back", rolled)
			}
			if strings.Contains(got.Output, changeMark) || (!tc.full && !strings.Contains(w.out.(*strings.Builder).String(), "says hello")) {
				t.Errorf("output passed on %q", w.out)
			}
			got.Output, got.FailedUnits = "", nil
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("changed (-want +got):\n%s", d)
			}
			log, _ := os.ReadFile(filepath.Join(profiles, "log"))
			gotLog := strings.Split(strings.TrimSpace(strings.ReplaceAll(string(log), newSys, "NEW")), "\n")
			if d := cmp.Diff(tc.wantLog, gotLog); d != "" {
				t.Errorf("host steps (-want +got):\n%s", d)
			}
			link, _ := os.Readlink(P)
			if link != tc.wantLink {
				t.Errorf("profile %q, want %q", link, tc.wantLink)
			}
			if tc.want.RolledBack && tc.gen == "new" {
				if _, err := os.Lstat(P + "-2-link"); err == nil {
					t.Errorf("the failed generation was kept")
				}
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// plain.sh passes shellcheck.
func TestPlainScriptPassesShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Skip("no shellcheck")
	}
	cmd := exec.Command("shellcheck", "-S", "warning", "-s", "sh", "-")
	cmd.Stdin = strings.NewReader(plainFile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%v\n%s", err, out)
	}
}
