package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/cli"
	"github.com/skiffdeploy/skiff/internal/lab"
)

// diffSystem is a lab system with a demo-web.service whose definition
// changes with gen and a few packages.
func diffSystem(name string, gen int, packages, extra string) string {
	return fmt.Sprintf(`      %s = lib.mkSystem { name = %q; generation = %d; packages = { %s };
        units = lib.defaultUnits // { "demo-web.service" = { description = "Demo web service"; version = %d; }; }; %s };
`, name, name, gen, packages, gen, extra)
}

const (
	pkgs1 = `demo-web = "1"; openssl = "3.0.13"; gone = "0.1";`
	pkgs2 = `demo-web = "2"; openssl = "3.0.13"; newtool = "1.0";`
	newOS = `nixosVersion = "24.11.20241201.lab";`
)

// hostState is everything a plan must leave alone on a host: the running
// and booted systems, the profile and its generations, the boot default
// and the units' journal (a start, stop or restart adds to it).
func hostState(t *testing.T, l *lab.Lab, name string) string {
	t.Helper()
	out, err := l.Host(name).Exec(context.Background(), "sh", "-c",
		`readlink /run/current-system; readlink /nix/var/nix/profiles/system; ls /nix/var/nix/profiles; readlink /nix/var/lab/boot-default; cat /run/lab-systemd/units/* /run/lab-systemd/journal 2>/dev/null`)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

func TestDiffAndPlanChangeNothing(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "dw1"}, lab.HostSpec{Name: "dw2"}, lab.HostSpec{Name: "dd1"}, lab.HostSpec{Name: "dx1"})
	deployUser := `deployment.targetUser = "deploy";`
	gen1 := writeFlake(t, diffSystem("dw1", 1, pkgs1, "")+diffSystem("dw2", 1, pkgs1, deployUser)+
		diffSystem("dd1", 1, pkgs1, "")+diffSystem("dx1", 1, pkgs1, ""))
	wantCode(t, skiffOn(t, l, "deploy", "--flake", gen1), 0)
	if err := l.Host("dx1").StopSSHD(); err != nil {
		t.Fatal(err)
	}
	gen2 := writeFlake(t, diffSystem("dw1", 2, pkgs2, newOS)+diffSystem("dw2", 2, pkgs2, newOS+deployUser)+
		diffSystem("dd1", 1, pkgs1, "")+diffSystem("dx1", 2, pkgs2, newOS))

	before := map[string]string{}
	for _, h := range []string{"dw1", "dw2", "dd1"} {
		before[h] = hostState(t, l, h)
	}
	unchanged := func(when string) {
		t.Helper()
		for h, want := range before {
			if diff := cmp.Diff(want, hostState(t, l, h)); diff != "" {
				t.Errorf("%s changed %s (-before +after):\n%s", when, h, diff)
			}
		}
	}

	// Text: hosts with identical changes grouped, up to date, unreachable.
	r := skiffOn(t, l, "-o", "ConnectTimeout=2", "diff", "--flake", gen2)
	wantCode(t, r, 3)
	wantContains(t, "stdout", r.stdout,
		"dw1, dw2: nixos 24.05.20240601.lab → 24.11.20241201.lab, demo-web 1 → 2, adds newtool 1.0, removes gone 0.1, restarts demo-web.service; size ",
		"dd1: up to date\n",
		"dx1: failed (refused)\n")
	wantContains(t, "stderr", r.stderr, "skiff: error: dx1: connection to root@dx1 refused", "skiff: hint: ")
	// Of the 8 paths of the new closure, the host has 3 (tools, kernel,
	// openssl): only the other 5 are copied for dry-activate.
	for _, h := range []string{"dw1", "dw2"} {
		if !regexp.MustCompile(h + `: plan: copying 5 missing path\(s\)`).MatchString(r.stderr) {
			t.Errorf("%s: want exactly the 5 missing paths copied:\n%s", h, r.stderr)
		}
	}
	unchanged("skiff diff")

	// JSON: stable fields; the missing paths are there now.
	r = skiffOn(t, l, "diff", "dw1", "dw2", "dd1", "--json", "--flake", gen2)
	wantCode(t, r, 0)
	var report struct {
		Hosts []struct {
			Host           string            `json:"host"`
			Status         string            `json:"status"`
			OldSystem      string            `json:"old_system"`
			NewSystem      string            `json:"new_system"`
			System         map[string]string `json:"system"`
			Added          []map[string]string
			Removed        []map[string]string
			Changed        []map[string]string
			SizeDeltaBytes *int64              `json:"size_delta_bytes"`
			Units          map[string][]string `json:"units"`
			CopiedPaths    int                 `json:"copied_paths"`
			Error          map[string]string   `json:"error"`
		} `json:"hosts"`
		Groups []struct {
			Hosts   []string `json:"hosts"`
			Summary string   `json:"summary"`
		} `json:"groups"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &report); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	if len(report.Hosts) != 3 || len(report.Groups) != 2 {
		t.Fatalf("--json: %d hosts and %d groups, want 3 and 2:\n%s", len(report.Hosts), len(report.Groups), r.stdout)
	}
	byHost := map[string]int{}
	for i, h := range report.Hosts {
		byHost[h.Host] = i
	}
	web := report.Hosts[byHost["dw1"]]
	if web.Host != "dw1" || web.Status != "changes" || web.CopiedPaths != 0 || web.SizeDeltaBytes == nil || web.Error != nil ||
		web.OldSystem == "" || web.NewSystem == "" || web.OldSystem == web.NewSystem {
		t.Errorf("dw1: %+v", web)
	}
	if diff := cmp.Diff(map[string]string{"name": "nixos", "old": "24.05.20240601.lab", "new": "24.11.20241201.lab"}, web.System); diff != "" {
		t.Errorf("dw1 system (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]map[string]string{{"name": "demo-web", "old": "1", "new": "2"}}, web.Changed); diff != "" {
		t.Errorf("dw1 changed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]map[string]string{{"name": "newtool", "version": "1.0"}}, web.Added); diff != "" {
		t.Errorf("dw1 added (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]map[string]string{{"name": "gone", "version": "0.1"}}, web.Removed); diff != "" {
		t.Errorf("dw1 removed (-want +got):\n%s", diff)
	}
	wantUnits := map[string][]string{"stop": {"demo-web.service"}, "start": {"demo-web.service"}, "restart": {}, "reload": {}}
	if diff := cmp.Diff(wantUnits, web.Units); diff != "" {
		t.Errorf("dw1 units (-want +got):\n%s", diff)
	}
	if db := report.Hosts[byHost["dd1"]]; db.Host != "dd1" || db.Status != "up-to-date" || db.Units != nil || len(db.Changed) != 0 {
		t.Errorf("dd1: %+v", db)
	}
	if g := report.Groups[1]; !cmp.Equal(g.Hosts, []string{"dw1", "dw2"}) || !strings.HasPrefix(g.Summary, "nixos 24.05") {
		t.Errorf("group: %+v", g)
	}
	unchanged("skiff diff --json")

	// deploy --plan asks on a terminal; without one it wants --yes, and
	// refuses before connecting to any host.
	logins := l.Host("dw1").Logins("root")
	r = skiffOn(t, l, "deploy", "dw1", "--plan", "--flake", gen2)
	wantCode(t, r, 2)
	wantContains(t, "stderr", r.stderr, "skiff: error: --plan asks for confirmation, but standard input is not a terminal", "skiff: hint: add --yes")
	if got := l.Host("dw1").Logins("root"); got != logins {
		t.Errorf("a refused --plan logged in %d time(s)", got-logins)
	}

	r = skiffOnTTY(t, l, "n\n", "deploy", "dw1", "dw2", "--plan", "--flake", gen2)
	wantCode(t, r, 1)
	wantContains(t, "stderr", r.stderr, "skiff: plan:\n", "dw1, dw2: nixos 24.05.20240601.lab → 24.11.20241201.lab", "[y/N]",
		"skiff: error: deploy cancelled: nothing was changed")
	unchanged("deploy --plan answered no")

	r = skiffOnTTY(t, l, "y\n", "deploy", "dw1", "--plan", "--flake", gen2)
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "dw1", "deployed", "1 -> 2")
	wantContains(t, "progress", r.stderr, "nothing to copy") // the plan copied it

	r = skiffOn(t, l, "deploy", "dw2", "dd1", "--plan", "--yes", "--flake", gen2)
	wantCode(t, r, 0)
	wantContains(t, "stderr", r.stderr, "skiff: plan:\n", "dw2: nixos 24.05", "dd1: up to date")
	wantContains(t, "summary", r.stdout, "1 -> 2", "up to date")
	if strings.Contains(r.stderr, "[y/N]") {
		t.Errorf("--yes asked anyway:\n%s", r.stderr)
	}
	for _, h := range []string{"dw1", "dw2"} {
		if cur := strings.TrimSpace(hostState(t, l, h)); !strings.Contains(cur, "system-2-link") {
			t.Errorf("%s after the deploy: %s", h, cur)
		}
	}
}

// skiffOnTTY runs the command line in-process with a terminal as
// standard input (a pseudo-terminal holding answer).
func skiffOnTTY(t *testing.T, l *lab.Lab, answer string, args ...string) result {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetUint32(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pseudo-terminal number: %v", err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pseudo-terminal: %v", err)
	}
	defer tty.Close()
	// Drain the echo so the terminal never blocks.
	go func() {
		buf := make([]byte, 1024)
		for {
			if _, err := master.Read(buf); err != nil {
				return
			}
		}
	}()
	if _, err := master.WriteString(answer); err != nil {
		t.Fatal(err)
	}
	full := append([]string{"-F", l.SSHConfig(), "--nix-option", "substituters="}, args...)
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code := cli.Main(ctx, full, tty, &stdout, &stderr)
	r := result{code, stdout.String(), stderr.String()}
	t.Logf("skiff %s (terminal answering %q)\nexit %d\n--- stdout\n%s--- stderr\n%s", strings.Join(args, " "), answer, code, r.stdout, r.stderr)
	return r
}
