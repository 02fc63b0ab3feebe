package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func host(name string, extra string) string {
	return fmt.Sprintf("      %s = lib.mkSystem { name = %q; %s };\n", name, name, extra)
}

var copiedRE = regexp.MustCompile(`copying (\d+) path`)

func copiedPaths(r result) int {
	m := copiedRE.FindStringSubmatch(r.stderr)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func TestDeploySwitchCopiesOnlyWhatIsMissing(t *testing.T) {
	logins := fleet.Host("web1").Logins("root")
	r := skiff(t, "deploy", "web1", "--flake", writeFlake(t, host("web1", "generation = 1;")))
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "web1", "deployed", "- -> 1")
	first := copiedPaths(r)
	if first < 3 {
		t.Errorf("first deploy copied %d paths, want the whole closure (at least 3)", first)
	}
	if got := fleet.Host("web1").Logins("root") - logins; got != 1 {
		t.Errorf("a plain deploy made %d ssh logins, want 1", got)
	}
	if cur, prof := currentSystem(t, "web1"), profileTarget(t, "web1"); cur == "" || cur != prof {
		t.Errorf("running %q, profile %q: want the same new system", cur, prof)
	}
	if got := profileLink(t, "web1"); got != "system-1-link" {
		t.Errorf("profile link %q, want system-1-link", got)
	}
	gen1 := currentSystem(t, "web1")

	r = skiff(t, "deploy", "web1", "--flake", writeFlake(t, host("web1", "generation = 2;")))
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "1 -> 2")
	if second := copiedPaths(r); second == 0 || second >= first {
		t.Errorf("second deploy copied %d paths; want fewer than the first (%d): the shared base is already there", second, first)
	}
	if cur := currentSystem(t, "web1"); cur == gen1 || cur != profileTarget(t, "web1") {
		t.Errorf("after generation 2: running %q (generation 1 was %q)", cur, gen1)
	}

	logins = fleet.Host("web1").Logins("root")
	r = skiff(t, "deploy", "web1", "--flake", writeFlake(t, host("web1", "generation = 2;")))
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "up to date")
	wantContains(t, "progress", r.stderr, "running generation 2")
	if strings.Contains(r.stderr, "copying") || strings.Contains(r.stderr, "switch-to-configuration") {
		t.Errorf("an up-to-date host was copied to or activated:\n%s", r.stderr)
	}
	if got := fleet.Host("web1").Logins("root") - logins; got != 1 {
		t.Errorf("an up-to-date deploy made %d ssh logins, want 1", got)
	}
}

func TestModesTestBootDryActivate(t *testing.T) {
	skiffOK := func(gen int, mode string) result {
		r := skiff(t, "deploy", "modes", "--mode", mode, "--flake", writeFlake(t, host("modes", fmt.Sprintf("generation = %d;", gen))))
		wantCode(t, r, 0)
		return r
	}
	skiffOK(1, "switch")
	gen1 := currentSystem(t, "modes")

	r := skiffOK(2, "test")
	wantContains(t, "progress", r.stderr, "test creates no generation", "boot default stays generation 1")
	gen2 := currentSystem(t, "modes")
	if gen2 == gen1 {
		t.Error("test mode did not activate the new system")
	}
	if got := profileLink(t, "modes"); got != "system-1-link" {
		t.Errorf("test mode moved the profile to %q", got)
	}

	skiffOK(3, "boot")
	if got := profileLink(t, "modes"); got != "system-2-link" {
		t.Errorf("boot mode: profile %q, want system-2-link", got)
	}
	if cur := currentSystem(t, "modes"); cur != gen2 {
		t.Errorf("boot mode changed the running system to %q", cur)
	}
	gen3 := profileTarget(t, "modes")

	r = skiffOK(4, "dry-activate")
	wantContains(t, "progress", r.stderr, "dry-activate creates no generation", "would")
	if cur, prof := currentSystem(t, "modes"), profileTarget(t, "modes"); cur != gen2 || prof != gen3 {
		t.Errorf("dry-activate changed the host: running %q, profile %q", cur, prof)
	}
}

func TestNonRootUserUsesSudo(t *testing.T) {
	logins := fleet.Host("sudo1").Logins("deploy")
	r := skiff(t, "deploy", "sudo1", "--target-user", "deploy", "--flake", writeFlake(t, host("sudo1", "")))
	wantCode(t, r, 0)
	if got := fleet.Host("sudo1").Logins("deploy") - logins; got != 1 {
		t.Errorf("deploy as deploy made %d logins as deploy, want 1", got)
	}
	if got := profileLink(t, "sudo1"); got != "system-1-link" {
		t.Errorf("profile %q", got)
	}
	// The same through the flake's deployment.targetUser.
	r = skiff(t, "deploy", "sudo1", "--flake", writeFlake(t, host("sudo1", `generation = 2; deployment.targetUser = "deploy";`)))
	wantCode(t, r, 0)
	wantContains(t, "progress", r.stderr, "deploy@sudo1")
}

func TestTraceShowsEveryCommand(t *testing.T) {
	r := skiff(t, "-x", "deploy", "web2", "--flake", writeFlake(t, host("web2", fmt.Sprintf("generation = %d;", unbuilt()))))
	wantCode(t, r, 0)
	wantContains(t, "trace", r.stderr, "+ nix --extra-experimental-features", " eval --json ", " build --json --no-link ",
		"+ ssh -F ", "root@web2 -- 'sh -c ", "exec nix-store --import", "skiff-import'", "switch-to-configuration switch", "-O exit")
	// The export stream is skiff's own: no nix-store process writes it.
	wantContains(t, "progress", r.stderr, "web2: copy: copied ")
	if strings.Contains(r.stderr, "+ nix-store --export") {
		t.Errorf("a nix-store --export wrote the stream:\n%s", r.stderr)
	}
}

func TestUnknownHostIsRefusedBeforeAnyHostIsTouched(t *testing.T) {
	flake := writeFlake(t, host("web1", "")+host("db1", ""))
	logins := fleet.Host("web1").Logins("root") + fleet.Host("db1").Logins("root")
	r := skiff(t, "-x", "deploy", "nosuch", "--flake", flake)
	wantCode(t, r, 2)
	wantContains(t, "error", r.stderr, `skiff: error: unknown host "nosuch"`, "skiff: hint: known hosts: db1, web1")
	if strings.Contains(r.stderr, "+ ssh") {
		t.Errorf("ssh ran for an unknown host:\n%s", r.stderr)
	}
	if got := fleet.Host("web1").Logins("root") + fleet.Host("db1").Logins("root"); got != logins {
		t.Error("a host was logged into")
	}
}

func TestHostileNamesAreRefusedBeforeNix(t *testing.T) {
	flake := writeFlake(t, host("web1", ""))
	for _, name := range []string{"web1;touch /tmp/pwned", "$(id)", "-oProxyCommand=id", "../etc"} {
		r := skiff(t, "-x", "deploy", "--flake", flake, "--", name)
		wantCode(t, r, 2)
		wantContains(t, "error", r.stderr, "skiff: error: invalid host name")
		if strings.Contains(r.stderr, "+ ") {
			t.Errorf("%q: a command ran:\n%s", name, r.stderr)
		}
	}
	// A hostile destination in the flake is refused before ssh.
	r := skiff(t, "-x", "deploy", "web1", "--flake", writeFlake(t, host("web1", `deployment.targetHost = "-oProxyCommand=touch /tmp/pwned";`)))
	wantCode(t, r, 2)
	wantContains(t, "error", r.stderr, "invalid deployment.targetHost")
	if strings.Contains(r.stderr, "+ ssh") {
		t.Errorf("ssh ran:\n%s", r.stderr)
	}
}

func TestMalformedAndMissingFlakes(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("{\n  outputs = { self }: {\n    nixosConfigurations = { web1 = ; };\n  };\n}\n"), 0o644)
	r := skiff(t, "deploy", "web1", "--flake", dir)
	wantCode(t, r, 1)
	wantContains(t, "error", r.stderr, "skiff: error: cannot evaluate flake", "syntax error", filepath.Join(dir, "flake.nix")+":3", "skiff: hint:")
	if strings.Contains(r.stderr, "/nix/store/") {
		t.Errorf("error names the store copy instead of the user's file:\n%s", r.stderr)
	}

	r = skiff(t, "deploy", "web1", "--flake", filepath.Join(dir, "missing"))
	wantCode(t, r, 2)
	wantContains(t, "error", r.stderr, "does not exist")

	empty := t.TempDir()
	r = skiff(t, "deploy", "web1", "--flake", empty)
	wantCode(t, r, 2)
	wantContains(t, "error", r.stderr, "has no flake.nix", "skiff: hint:")
}

func TestUnreachableHostsNameTheLayer(t *testing.T) {
	// A listener that accepts and never speaks: ssh times out in the
	// banner exchange, within the connect timeout.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port

	if err := fleet.Host("down1").Stop(); err != nil {
		t.Fatal(err)
	}
	defer fleet.Host("down1").Start(t.Context())
	if err := fleet.Host("auth1").SetAuthorizedKeys("root", nil); err != nil {
		t.Fatal(err)
	}
	defer fleet.Host("auth1").SetAuthorizedKeys("root", []string{fleet.PublicKey()})

	for _, tc := range []struct {
		name, settings string
		want           []string
	}{
		{"down1", "", []string{"connection to root@down1 refused", "sshd is not running"}},
		{"auth1", "", []string{"authentication as root refused: key not authorized", "authorizedKeys"}},
		{"nxhost", `deployment.targetHost = "nxhost.invalid";`, []string{"cannot resolve nxhost.invalid (DNS)", "-G nxhost.invalid"}},
		{"silent", fmt.Sprintf(`deployment.targetHost = "127.0.0.1"; deployment.targetPort = %d;`, port), []string{"timed out", "firewall"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := skiff(t, "-o", "ConnectTimeout=2", "deploy", tc.name, "--flake", writeFlake(t, host(tc.name, tc.settings)))
			wantCode(t, r, 3)
			wantContains(t, "error", r.stderr, append([]string{"skiff: error: " + tc.name + ": ", "skiff: hint: "}, tc.want...)...)
		})
	}
}

func TestBuildFailureNamesDerivationAndLog(t *testing.T) {
	broken := `      broken = { config = { deployment.targetHost = "fail1"; system.build.toplevel = derivation {
        name = "nixos-system-broken"; system = "x86_64-linux"; builder = "/bin/sh";
        args = [ "-c" "echo compiling; echo 'oh no: missing dependency' >&2; exit 1" ]; }; }; };
`
	before := currentSystem(t, "fail1")
	r := skiff(t, "deploy", "broken", "--flake", writeFlake(t, broken))
	wantCode(t, r, 3)
	wantContains(t, "error", r.stderr, "skiff: error: broken: its system failed to build", "nixos-system-broken.drv", "oh no: missing dependency", `skiff: hint: see the whole log with "nix-store --read-log /nix/store/`)
	if got := currentSystem(t, "fail1"); got != before {
		t.Errorf("a failed build changed the host: %q -> %q", before, got)
	}
}

func TestActivationFailureRollsBack(t *testing.T) {
	r := skiff(t, "deploy", "fail1", "--flake", writeFlake(t, host("fail1", "generation = 1;")))
	wantCode(t, r, 0)
	good := currentSystem(t, "fail1")

	r = skiff(t, "deploy", "fail1", "--flake", writeFlake(t, host("fail1", "generation = 2; activationFails = true;")))
	wantCode(t, r, 4)
	wantContains(t, "error", r.stderr, "skiff: error: fail1: switch-to-configuration switch exited with 2 (the activation script failed); rolled back to generation 1")
	wantContains(t, "summary", r.stdout, "rolled back", "activation")
	if cur, prof := currentSystem(t, "fail1"), profileTarget(t, "fail1"); cur != good || prof != good {
		t.Errorf("after a failed activation: running %q, profile %q; want the previous %q for both", cur, prof, good)
	}
	if got := profileLink(t, "fail1"); got != "system-1-link" {
		t.Errorf("profile %q, want system-1-link (the failed generation removed)", got)
	}
}

func TestFailedUnitsAreNamed(t *testing.T) {
	r := skiff(t, "deploy", "units1", "--flake", writeFlake(t, host("units1",
		`units = { "sshd.service" = { description = "OpenSSH Daemon"; }; "demo-web.service" = { description = "Demo web service"; fails = true; }; };`)))
	wantCode(t, r, 3)
	wantContains(t, "error", r.stderr, "skiff: error: units1: switch-to-configuration switch exited with 4: units failed: demo-web.service", "journalctl -u")
	wantContains(t, "summary", r.stdout, "units1", "failed", "units")
}

func TestSudoWantingAPasswordFailsFast(t *testing.T) {
	r := skiff(t, "deploy", "pw1", "--target-user", "deploy", "--flake", writeFlake(t, host("pw1", "")))
	wantCode(t, r, 3)
	wantContains(t, "error", r.stderr, "skiff: error: pw1: sudo on the host wants a password for deploy",
		"skiff: hint: run with --ask-sudo-password", "NOPASSWD")
	wantContains(t, "summary", r.stdout, "pw1", "failed", "sudo")
	if got := profileLink(t, "pw1"); got != "" {
		t.Errorf("profile set to %q", got)
	}
}

func TestTooLittleDiskIsRefusedBeforeCopying(t *testing.T) {
	// The shared base alone (96 MiB of filler) does not fit in a 64 MiB store.
	r := skiff(t, "deploy", "small1", "--flake", writeFlake(t, host("small1", "baseSize = 100663296;")))
	wantCode(t, r, 3)
	wantContains(t, "error", r.stderr, "skiff: error: small1: needs 96.0 MiB in /nix/store", "MiB free", "nothing was copied",
		`skiff: hint: free space on the host: run "skiff gc small1 --keep 5 --flake `, "or deploy with --gc")
	wantContains(t, "summary", r.stdout, "small1", "failed", "disk")
	if strings.Contains(r.stderr, " copy --to ") || strings.Contains(r.stderr, "copying") {
		t.Errorf("copied anyway:\n%s", r.stderr)
	}
	if out := inHost(t, "small1", "sh", "-c", "ls /nix/store | grep -c lab-system-path || true"); out != "0" {
		t.Errorf("store has the base path after a refused deploy: %s", out)
	}
	if got := profileLink(t, "small1"); got != "" {
		t.Errorf("profile set to %q", got)
	}

	// Two generations of 16 MiB fill the store; a third does not fit
	// until --gc deletes the oldest one and collects its paths.
	mib := 1 << 20
	for i, size := range []int{16 * mib, 16*mib + 1} {
		r = skiff(t, "deploy", "small1", "--flake", writeFlake(t, host("small1", fmt.Sprintf("generation = %d; baseSize = %d;", i+1, size))))
		wantCode(t, r, 0)
	}
	third := writeFlake(t, host("small1", fmt.Sprintf("generation = 3; baseSize = %d;", 16*mib+2)))
	r = skiff(t, "deploy", "small1", "--flake", third)
	wantCode(t, r, 3)
	wantContains(t, "error", r.stderr, "nothing was copied")
	r = skiff(t, "deploy", "small1", "--gc", "--gc-keep", "1", "--flake", third)
	wantCode(t, r, 0)
	wantContains(t, "progress", r.stderr, "deleting all but the newest 1 generations and collecting garbage", "deleted 1 generation(s), freed")
	if got := profileLink(t, "small1"); got != "system-3-link" {
		t.Errorf("profile %q, want system-3-link", got)
	}
}

func TestOneBrokenBuildDoesNotStopTheOthers(t *testing.T) {
	broken := `      broken = { config = { deployment.targetHost = "db1"; system.build.toplevel = derivation {
        name = "nixos-system-broken"; system = "x86_64-linux"; builder = "/bin/sh";
        args = [ "-c" "echo 'oh no' >&2; exit 1" ]; }; }; };
`
	flake := writeFlake(t, broken+host("db1", "generation = 1;"))
	r := skiff(t, "deploy", "--flake", flake)
	wantCode(t, r, 3)
	wantContains(t, "summary", r.stdout, "broken  failed", "build", "db1     deployed")
	wantContains(t, "error", r.stderr, "skiff: error: broken: its system failed to build")

	// --force activates a host that already runs the new system.
	r = skiff(t, "deploy", "db1", "--flake", flake)
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "up to date")
	r = skiff(t, "deploy", "db1", "--force", "--flake", flake)
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "db1   deployed")
	wantContains(t, "progress", r.stderr, "db1: activate:")
}
