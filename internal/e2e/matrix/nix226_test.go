package matrix

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/cli"
	"github.com/skiffdeploy/skiff/internal/lab/nspawn"
	"github.com/skiffdeploy/skiff/internal/nix"
)

// cliEnv, set to 1, makes the test binary run skiff's command line instead
// of its tests: that is how the deployer's skiff runs in the chroot.
const cliEnv = "SKIFF_MATRIX_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) == "1" {
		os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// confirm keeps the confirmation of a lockout short.
const confirm = "--confirm-timeout=5s"

// world is a fleet of systemd hosts and a deployer of one release.
type world struct {
	f       *nspawn.Fleet
	d       *nspawn.Deployer
	exe     string // this test binary, bound into the deployer's chroot
	flakes  string // where flakes are written (bound)
	state   string // the deployer's history and cache (bound)
	nflakes atomic.Int64
}

type result struct {
	code           int
	stdout, stderr string
}

// need skips (or fails, in CI) when the machine cannot run release r.
func need(t *testing.T, r nspawn.Release) {
	t.Helper()
	if err := r.Available(""); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("cannot run the %s hosts and deployer in CI: %v", r.Suite, err)
		}
		t.Skipf("skipping the %s hosts and deployer: %v", r.Suite, err)
	}
}

// start boots hosts of release r and makes a deployer of release dr.
func start(t *testing.T, ctx context.Context, r, dr nspawn.Release, hosts ...string) *world {
	t.Helper()
	need(t, r)
	need(t, dr)
	base := t.TempDir()
	w := &world{flakes: filepath.Join(base, "flakes"), state: filepath.Join(base, "state")}
	for _, d := range []string{w.flakes, w.state} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	w.exe = exe
	var specs []nspawn.HostSpec
	for _, h := range hosts {
		specs = append(specs, nspawn.HostSpec{Name: h})
	}
	begin := time.Now()
	w.f, err = nspawn.Start(ctx, nspawn.Options{Dir: filepath.Join(base, "fleet"), Release: r, Hosts: specs, Logf: t.Logf})
	if err != nil {
		t.Fatalf("start the %s hosts: %v", r.Suite, err)
	}
	t.Cleanup(func() {
		if err := w.f.Stop(); err != nil {
			t.Errorf("stop the %s hosts: %v", r.Suite, err)
		}
	})
	t.Logf("%d %s hosts booted in %s (tree %s)", len(hosts), r.Suite, time.Since(begin).Round(10*time.Millisecond), w.f.Tree())
	w.d, err = nspawn.NewDeployer(ctx, nspawn.DeployerOptions{Release: dr, Dir: filepath.Join(base, "deployer"),
		Binds: []string{w.f.Dir(), w.flakes, w.state, exe}, Logf: t.Logf})
	if err != nil {
		t.Fatalf("deployer: %v", err)
	}
	return w
}

// skiff runs skiff's command line on the deployer against the hosts.
func (w *world) skiff(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	argv := append([]string{w.exe, "-F", w.f.SSHConfig(), "--nix-option", "substituters="}, args...)
	stdout, stderr, code, err := w.d.Run(ctx, nil, []string{cliEnv + "=1", "SKIFF_HISTORY=" + filepath.Join(w.state, "history.db"), "XDG_CACHE_HOME=" + filepath.Join(w.state, "cache")}, argv...)
	if err != nil {
		t.Fatalf("skiff on the deployer: %v\n%s", err, stderr)
	}
	r := result{code, string(stdout), string(stderr)}
	t.Logf("skiff %s (deployer %s)\nexit %d\n--- stdout\n%s--- stderr\n%s", strings.Join(args, " "), w.d.Release().Suite, code, r.stdout, r.stderr)
	return r
}

// local runs skiff's command line in-process, with the machine's nix,
// against the hosts of f.
func local(t *testing.T, f *nspawn.Fleet, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr strings.Builder
	code := cli.Main(ctx, append([]string{"-F", f.SSHConfig(), "--nix-option", "substituters="}, args...), strings.NewReader(""), &stdout, &stderr)
	r := result{code, stdout.String(), stderr.String()}
	t.Logf("skiff %s (the machine's nix)\nexit %d\n--- stdout\n%s--- stderr\n%s", strings.Join(args, " "), code, r.stdout, r.stderr)
	return r
}

// deployerRun runs argv on the deployer and returns its standard output.
func (w *world) deployerRun(t *testing.T, argv ...string) string {
	t.Helper()
	stdout, stderr, code, err := w.d.Run(t.Context(), nil, nil, argv...)
	if err != nil || code != 0 {
		t.Fatalf("deployer: %s: exit %d, %v\n%s", strings.Join(argv, " "), code, err, stderr)
	}
	return strings.TrimSpace(string(stdout))
}

// on runs argv inside a host (not over SSH) and returns its output.
func (w *world) on(t *testing.T, host string, argv ...string) string {
	t.Helper()
	out, err := w.f.Host(host).Exec(context.Background(), argv...)
	if err != nil {
		t.Fatalf("%s: %v", host, err)
	}
	return strings.TrimSpace(out)
}

// try is on for commands that may fail.
func (w *world) try(host string, argv ...string) string {
	out, _ := w.f.Host(host).Exec(context.Background(), argv...)
	return strings.TrimSpace(out)
}

// flake writes a flake whose nixosConfigurations are configs (bindings
// using lib.mkSystemdSystem) next to the example flake's lib.nix, where the
// deployer sees it.
func (w *world) flake(t *testing.T, configs string) string {
	t.Helper()
	example, err := filepath.Abs("../../../examples/fleet")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(w.flakes, fmt.Sprint(w.nflakes.Add(1)))
	if err := os.CopyFS(dir, os.DirFS(example)); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"flake.nix", "flake.lock", "generation", "overrides.nix"} {
		os.Remove(filepath.Join(dir, f))
	}
	rewrite(t, dir, configs)
	return dir
}

// rewrite replaces the systems of the flake in dir, which stays where it
// is (the same flake reference, as after an edit).
func rewrite(t *testing.T, dir, configs string) {
	t.Helper()
	flake := "{\n  outputs = { self }: let lib = import ./lib.nix; in {\n    nixosConfigurations = {\n" + configs + "\n    };\n  };\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
}

// system is a nixosConfigurations binding of generation gen of a systemd
// host, whose demo-web unit changes with gen (so each generation restarts it).
func system(name string, gen int, extra string) string {
	return fmt.Sprintf(`      %s = lib.mkSystemdSystem { name = %q; generation = %d; units = { "demo-web.service" = { description = "Demo web service"; execStart = "/bin/sleep infinity"; version = %d; }; }; %s };
`, name, name, gen, gen, extra)
}

func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstderr:\n%s", r.code, code, r.stderr)
	}
}

func wantContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s lacks %q:\n%s", what, sub, s)
		}
	}
}

// nixVersionRE finds "2.26" in "nix (Nix) 2.26.3".
var nixVersionRE = regexp.MustCompile(`\) (\d+\.\d+)\.`)

func nixVersion(t *testing.T, out string) string {
	t.Helper()
	m := nixVersionRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no nix version in %q", out)
	}
	return m[1]
}

// TestNix226 is the Nix 2.26 column of the version matrix: skiff with Nix
// 2.26 on its PATH (a chroot of Debian 13) against Debian 13 hosts (systemd
// 257, Nix 2.26). The rest of the end-to-end suite runs Nix 2.8 on both
// sides.
func TestNix226(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const h, lock, mixed = "n226", "n226-lockout", "n226-mixed"
	w := start(t, ctx, nspawn.Trixie, nspawn.Trixie, h, lock, mixed)
	for _, name := range []string{h, lock, mixed} {
		if got := nixVersion(t, w.on(t, name, "nix-store", "--version")); got != "2.26" {
			t.Fatalf("%s runs Nix %s, want 2.26", name, got)
		}
	}
	if got := nixVersion(t, w.deployerRun(t, "nix", "--version")); got != "2.26" {
		t.Fatalf("the deployer runs Nix %s, want 2.26", got)
	}
	// Every subtest below needs the ones before it (on host h).
	var systems []string
	steps := []struct {
		name string
		run  func(*testing.T)
	}{
		{"Deploy", func(t *testing.T) {
			r := w.skiff(t, "deploy", h, confirm, "--flake", w.flake(t, system(h, 1, "")))
			wantCode(t, r, 0)
			wantContains(t, "summary", r.stdout, h, "deployed")
			if got := w.on(t, h, "systemctl", "is-active", "demo-web.service"); got != "active" {
				t.Fatalf("demo-web.service %s after the first deploy", got)
			}
			systems = append(systems, w.on(t, h, "readlink", "/run/current-system"))
		}},
		{"SupervisedSwitch", func(t *testing.T) {
			pid1 := w.on(t, h, "systemctl", "show", "-P", "MainPID", "demo-web.service")
			r := w.skiff(t, "deploy", h, confirm, "--flake", w.flake(t, system(h, 2, "")))
			if r.code != 0 {
				t.Log(w.try(h, "sh", "-c", "tail -n +1 /run/skiff/act-*/state /run/skiff/act-*/log; journalctl --no-pager -n 60"))
			}
			wantCode(t, r, 0)
			wantContains(t, "progress", r.stderr, "under a supervisor", "restarting the following units: demo-web.service", "confirmed; system profile at generation 2")
			wantContains(t, "summary", r.stdout, h, "deployed", "1 -> 2")
			wantContains(t, "journal of PID 1", w.try(h, "journalctl", "--no-pager", "-o", "cat", "_PID=1", "-u", "skiff-activate-*"), "Started skiff-activate-")
			if pid2 := w.on(t, h, "systemctl", "show", "-P", "MainPID", "demo-web.service"); pid2 == pid1 || pid2 == "0" {
				t.Errorf("demo-web.service main pid %s, was %s: want a restarted unit", pid2, pid1)
			}
			if got := w.on(t, h, "readlink", "/nix/var/nix/profiles/system"); got != "system-2-link" {
				t.Errorf("profile %s, want system-2-link", got)
			}
			systems = append(systems, w.on(t, h, "readlink", "/run/current-system"))
		}},
		{"Diff", func(t *testing.T) {
			same := w.flake(t, system(h, 2, ""))
			r := w.skiff(t, "diff", h, "--flake", same)
			wantCode(t, r, 0)
			wantContains(t, "stdout", r.stdout, h+": up to date")
			next := w.flake(t, system(h, 3, `nixosVersion = "24.11.20241201.lab";`))
			r = w.skiff(t, "diff", h, "--flake", next)
			wantCode(t, r, 0)
			wantContains(t, "stdout", r.stdout, h+": nixos 24.05.20240601.lab → 24.11.20241201.lab", "restarts demo-web.service")
			if got := w.on(t, h, "readlink", "/run/current-system"); got != systems[1] {
				t.Errorf("diff changed the running system to %s", got)
			}
			if got := w.on(t, h, "readlink", "/nix/var/nix/profiles/system"); got != "system-2-link" {
				t.Errorf("diff changed the profile to %s", got)
			}
		}},
		{"GC", func(t *testing.T) {
			flake := w.flake(t, system(h, 2, ""))
			r := w.skiff(t, "gc", h, "--keep", "1", "--dry-run", "--flake", flake)
			wantCode(t, r, 0)
			wantContains(t, "dry run", r.stdout, "WOULD DELETE")
			r = w.skiff(t, "gc", h, "--keep", "1", "--json", "--flake", flake)
			wantCode(t, r, 0)
			var res struct {
				Hosts []struct {
					FreedPaths int `json:"freedPaths"`
				} `json:"hosts"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || len(res.Hosts) != 1 {
				t.Fatalf("gc --json: %v\n%s", err, r.stdout)
			}
			if res.Hosts[0].FreedPaths == 0 {
				t.Errorf("gc freed no paths; want generation 1's system")
			}
			gens := w.on(t, h, "sh", "-c", "cd /nix/var/nix/profiles && ls -d system-*-link | tr '\\n' ' '")
			if gens != "system-2-link" {
				t.Errorf("generations after gc --keep 1: %q, want system-2-link", gens)
			}
			if _, err := w.f.Host(h).Exec(t.Context(), "test", "-e", systems[0]); err == nil {
				t.Errorf("%s survived the collection", systems[0])
			}
			if _, err := w.f.Host(h).Exec(t.Context(), "nix-store", "--verify-path", systems[1]); err != nil {
				t.Errorf("the running system lost its closure: %v", err)
			}
		}},
		{"RedeployAndNoOp", func(t *testing.T) {
			// One flake, edited as a user does: the redeploy's store
			// query asks about what the last system lacks, with that
			// system as its base (a Nix 2.26 deployer's path-info and a
			// Nix 2.26 host's nix-store); deployed again unchanged, the
			// host is found up to date by its links and boot state (a
			// real systemd host), in one ssh command.
			dir := w.flake(t, system(h, 3, ""))
			wantCode(t, w.skiff(t, "deploy", h, confirm, "--flake", dir), 0)
			base := w.on(t, h, "readlink", "/run/current-system")
			rewrite(t, dir, system(h, 4, ""))
			r := w.skiff(t, "-x", "deploy", h, confirm, "--flake", dir)
			wantCode(t, r, 0)
			wantContains(t, "summary", r.stdout, h, "deployed", "3 -> 4")
			if !regexp.MustCompile(`(?m)(^:| )` + regexp.QuoteMeta(base) + `$`).MatchString(r.stderr) {
				t.Errorf("the store query did not name %s as its base:\n%s", base, r.stderr)
			}
			r = w.skiff(t, "-x", "deploy", h, confirm, "--flake", dir)
			wantCode(t, r, 0)
			wantContains(t, "summary", r.stdout, h, "up to date")
			wantContains(t, "trace", r.stderr, " links'")
			if strings.Contains(r.stderr, "skiff-session") {
				t.Errorf("an expected no-op opened a session:\n%s", r.stderr)
			}
		}},
		{"DeployUserThroughSudo", func(t *testing.T) {
			// Logged in as deploy, whose sudo asks for no password:
			// Nix 2.26's nix-store and nix-env and systemd 257's
			// systemd-run through sudo -n; then an unchanged
			// redeploy, read through sudo.
			dir := w.flake(t, system(h, 5, ""))
			r := w.skiff(t, "-x", "deploy", h, confirm, "--target-user=deploy", "--flake", dir)
			if r.code != 0 {
				t.Log(w.try(h, "sh", "-c", "tail -n +1 /run/skiff/act-*/state /run/skiff/act-*/log; journalctl --no-pager -n 60"))
			}
			wantCode(t, r, 0)
			wantContains(t, "summary", r.stdout, h, "deployed", "4 -> 5")
			wantContains(t, "trace", r.stderr, "deploy@"+h, "sudo -n", "under a supervisor")
			if strings.Contains(r.stderr, "root@"+h) {
				t.Errorf("a command logged in as root:\n%s", r.stderr)
			}
			if got := w.on(t, h, "readlink", "/nix/var/nix/profiles/system"); got != "system-5-link" {
				t.Errorf("profile %s, want system-5-link", got)
			}
			r = w.skiff(t, "deploy", h, confirm, "--target-user=deploy", "--flake", dir)
			wantCode(t, r, 0)
			wantContains(t, "summary", r.stdout, h, "up to date")
		}},
		{"Doctor", func(t *testing.T) {
			r := w.skiff(t, "doctor", "--json", "--flake", w.flake(t, system(h, 2, "")), h)
			wantCode(t, r, 0)
			var d struct {
				Hosts []struct {
					Host   string `json:"host"`
					Checks []struct {
						Check  string `json:"check"`
						Status string `json:"status"`
						Detail string `json:"detail"`
					} `json:"checks"`
				} `json:"hosts"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || len(d.Hosts) != 1 {
				t.Fatalf("doctor --json: %v\n%s", err, r.stdout)
			}
			var checked []string
			for _, c := range d.Hosts[0].Checks {
				checked = append(checked, c.Check)
				if c.Status != "ok" {
					t.Errorf("%s %s: %s %s, want ok", h, c.Check, c.Status, c.Detail)
				}
				if c.Check == "nix" && !strings.Contains(c.Detail, "2.26") {
					t.Errorf("nix check: %q, want Nix 2.26", c.Detail)
				}
			}
			for _, c := range []string{"auth", "nix", "store", "disk", "units", "platform"} {
				if !slices.Contains(checked, c) {
					t.Errorf("doctor ran no %s check: %v", c, checked)
				}
			}
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			t.Fatalf("%s failed: the steps after it need it", s.name)
		}
	}
	// Independent of the steps above: hosts of their own.
	t.Run("LockoutRollback", func(t *testing.T) {
		wantCode(t, w.skiff(t, "deploy", lock, confirm, "--flake", w.flake(t, system(lock, 1, ""))), 0)
		first := w.on(t, lock, "readlink", "/run/current-system")
		r := w.skiff(t, "deploy", lock, confirm, "--flake", w.flake(t, system(lock, 2, `sshdConfig = "PermitRootLogin no\n";`)))
		wantCode(t, r, 4)
		wantContains(t, "error", r.stderr, "skiff: error: "+lock+": lost SSH access after activation", "rolled back to generation 1",
			"skiff: hint: the new configuration locks root@"+lock+" out")
		if got := w.on(t, lock, "readlink", "/run/current-system"); got != first {
			t.Errorf("running %s, want the previous %s", got, first)
		}
		if got := w.on(t, lock, "readlink", "/nix/var/nix/profiles/system"); got != "system-1-link" {
			t.Errorf("profile %s, want system-1-link", got)
		}
		if got := w.try(lock, "systemctl", "is-active", "ssh.service"); got != "active" {
			t.Errorf("ssh.service %q after the rollback, want active", got)
		}
	})

	// The machine's skiff, with the machine's Nix 2.8, deploys to a Nix
	// 2.26 host: a first deploy and a supervised switch.
	t.Run("Deployer28Host226", func(t *testing.T) {
		if err := nix.Available(); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal(err)
			}
			t.Skip(err)
		}
		t.Setenv("SKIFF_HISTORY", filepath.Join(t.TempDir(), "history.db"))
		for gen := 1; gen <= 2; gen++ {
			r := local(t, w.f, "deploy", mixed, confirm, "--flake", w.flake(t, system(mixed, gen, "")))
			wantCode(t, r, 0)
			wantContains(t, "summary", r.stdout, mixed, "deployed")
		}
		if got := w.on(t, mixed, "readlink", "/nix/var/nix/profiles/system"); got != "system-2-link" {
			t.Errorf("profile %s, want system-2-link", got)
		}
	})
	// A Nix 2.26 deployer deploys to a Nix 2.8 host (Debian 12).
	t.Run("Deployer226Host28", func(t *testing.T) {
		const old = "n28"
		w28 := start(t, ctx, nspawn.Bookworm, nspawn.Trixie, old)
		if got := nixVersion(t, w28.on(t, old, "nix-store", "--version")); got != "2.8" {
			t.Fatalf("%s runs Nix %s, want 2.8", old, got)
		}
		for gen := 1; gen <= 2; gen++ {
			r := w28.skiff(t, "deploy", old, confirm, "--flake", w28.flake(t, system(old, gen, "")))
			wantCode(t, r, 0)
			wantContains(t, "summary", r.stdout, old, "deployed")
		}
		if got := w28.on(t, old, "readlink", "/nix/var/nix/profiles/system"); got != "system-2-link" {
			t.Errorf("profile %s, want system-2-link", got)
		}
	})
}
