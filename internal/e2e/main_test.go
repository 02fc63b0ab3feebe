package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/cli"
	"github.com/skiffdeploy/skiff/internal/lab"
)

// fleet is the lab shared by the tests of this package; each test uses its
// own hosts so that tests do not depend on each other's order.
var fleet *lab.Lab

var hostNames = []string{"web1", "web2", "db1", "modes", "sudo1", "fail1", "units1", "down1", "auth1", "trips1", "spec1"}

// Hosts with special settings.
var specialHosts = []lab.HostSpec{
	{Name: "pw1", SudoPassword: "correct horse"}, // deploy's sudo wants a password
	{Name: "small1", StoreSize: 64 << 20},        // a small /nix
}

func TestMain(m *testing.M) {
	if err := lab.Available(); err != nil {
		if os.Getenv("CI") != "" {
			fmt.Fprintf(os.Stderr, "e2e: cannot run the lab in CI: %v\n", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "e2e: skipping end-to-end tests: %v\n", err)
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "skiff-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Runs are recorded in a history of the tests' own.
	os.Setenv("SKIFF_HISTORY", filepath.Join(dir, "history.db"))
	// And cached (hosts, ssh targets) in a cache of their own.
	os.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	var specs []lab.HostSpec
	for _, n := range hostNames {
		specs = append(specs, lab.HostSpec{Name: n})
	}
	specs = append(specs, specialHosts...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	fleet, err = lab.Start(ctx, lab.Options{Dir: dir, Hosts: specs})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: start lab: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := fleet.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: stop lab: %v\n", err)
		code = 1
	}
	os.RemoveAll(dir)
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// example is the directory of the example flake.
func example(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../examples/fleet")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeFlake makes a flake in a fresh directory whose nixosConfigurations
// are configs (Nix attribute bindings using lib.mkSystem), next to a copy
// of the example flake's lib.nix and its lab/ scripts.
func writeFlake(t *testing.T, configs string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(example(t))); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"flake.nix", "flake.lock", "generation", "overrides.nix"} {
		os.Remove(filepath.Join(dir, f))
	}
	flake := "{\n  outputs = { self }: let lib = import ./lib.nix; in {\n    nixosConfigurations = {\n" + configs + "\n    };\n  };\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

type result struct {
	code           int
	stdout, stderr string
}

// skiff runs the command line in-process against the shared lab.
func skiff(t *testing.T, args ...string) result {
	t.Helper()
	return skiffOn(t, fleet, args...)
}

// inHost runs argv inside a lab host (not over SSH) for assertions.
func inHost(t *testing.T, host string, argv ...string) string {
	t.Helper()
	out, err := fleet.Host(host).Exec(context.Background(), argv...)
	if err != nil {
		t.Fatalf("%s: %v: %v", host, argv, err)
	}
	return strings.TrimSpace(out)
}

func currentSystem(t *testing.T, host string) string {
	t.Helper()
	out, _ := fleet.Host(host).Exec(context.Background(), "readlink", "/run/current-system")
	return strings.TrimSpace(out)
}

func profileLink(t *testing.T, host string) string {
	t.Helper()
	out, _ := fleet.Host(host).Exec(context.Background(), "readlink", "/nix/var/nix/profiles/system")
	return strings.TrimSpace(out)
}

func profileTarget(t *testing.T, host string) string {
	t.Helper()
	out, _ := fleet.Host(host).Exec(context.Background(), "readlink", "-f", "/nix/var/nix/profiles/system")
	return strings.TrimSpace(out)
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

// newLab starts a lab of its own for a test that needs hosts with special
// settings or that breaks hosts in ways other tests must not see. It is
// stopped when the test ends.
// unbuilt is a generation that no earlier test or run has built: a test that
// wants nix build to run uses it (a deploy or build whose systems are all
// in the local store already runs none).
func unbuilt() int64 {
	return time.Now().UnixNano() % 1e12
}

func newLab(t *testing.T, specs ...lab.HostSpec) *lab.Lab {
	t.Helper()
	l, err := lab.Start(t.Context(), lab.Options{Dir: t.TempDir(), Hosts: specs})
	if err != nil {
		t.Fatalf("start lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Stop(); err != nil {
			t.Errorf("stop lab: %v", err)
		}
	})
	return l
}

// sshConfigured is a fleet of test hosts skiff can reach: a lab, or the
// systemd hosts of package nspawn.
type sshConfigured interface{ SSHConfig() string }

// skiffOn runs the command line in-process against the hosts of l.
func skiffOn(t *testing.T, l sshConfigured, args ...string) result {
	t.Helper()
	return skiffWithInput(t, l, "", args...)
}

// skiffWithInput runs the command line in-process against the hosts of l,
// with stdin.
func skiffWithInput(t *testing.T, l sshConfigured, stdin string, args ...string) result {
	t.Helper()
	full := append([]string{"-F", l.SSHConfig(), "--nix-option", "substituters="}, args...)
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code := cli.Main(ctx, full, strings.NewReader(stdin), &stdout, &stderr)
	r := result{code, stdout.String(), stderr.String()}
	t.Logf("skiff %s\nexit %d\n--- stdout\n%s--- stderr\n%s", strings.Join(args, " "), code, r.stdout, r.stderr)
	return r
}

// profileOf is the system profile link of a host of lab l.
func profileOf(t *testing.T, l *lab.Lab, host string) string {
	t.Helper()
	out, _ := l.Host(host).Exec(context.Background(), "readlink", "/nix/var/nix/profiles/system")
	return strings.TrimSpace(out)
}
