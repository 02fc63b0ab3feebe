package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/skiffdeploy/skiff/internal/lab"
)

// One invocation deploys a NixOS host built here, a nix-darwin-shaped host
// and an aarch64-linux host built on a build host whose nix accepts
// aarch64-linux (extra-platforms); the aarch64 system never lands in this
// machine's store. --build-host does the same for every host.
func TestBuildHostMixedRun(t *testing.T) {
	l := newLab(t,
		lab.HostSpec{Name: "nxb"},
		lab.HostSpec{Name: "macb", Darwin: true},
		lab.HostSpec{Name: "armb"},
		lab.HostSpec{Name: "bld1", ExtraNixConf: "extra-platforms = aarch64-linux"},
		lab.HostSpec{Name: "bld2"}, // builds x86_64-linux only
	)
	flake := func(gen string) string {
		return writeMixedFlake(t,
			host("nxb", "generation = "+gen+";")+
				host("armb", `generation = `+gen+`; system = "aarch64-linux"; deployment.buildHost = "bld1";`),
			mac("macb", "generation = "+gen+";"))
	}
	r := skiffOn(t, l, "deploy", "--flake", flake(fmt.Sprint(unbuilt())))
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "nxb", "macb", "armb", "deployed")
	wantContains(t, "progress", r.stderr, "building 2 system(s)\n", "building 1 system(s) on bld1",
		"armb: copy: from build host bld1")
	arm := execIn(t, l, "armb", "readlink", "/run/current-system")
	if !strings.Contains(arm, "nixos-system-armb") || profileOf(t, l, "armb") != "system-1-link" {
		t.Fatalf("armb runs %q, profile %q", arm, profileOf(t, l, "armb"))
	}
	if got := execIn(t, l, "armb", "cat", arm+"/system"); got != "aarch64-linux" {
		t.Errorf("armb's system says %q, want aarch64-linux", got)
	}
	if _, err := l.Host("bld1").Exec(context.Background(), "nix-store", "--check-validity", arm); err != nil {
		t.Errorf("armb's system is not in the build host's store: %v", err)
	}
	if err := exec.Command("nix-store", "--check-validity", arm).Run(); err == nil {
		t.Errorf("armb's system %s was stored on the deploying machine", arm)
	}

	// --build-host for every host (here: armb alone, generation 2).
	r = skiffOn(t, l, "deploy", "armb", "--build-host", "root@bld1", "--flake", flake("2"))
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "1 -> 2")
	wantContains(t, "progress", r.stderr, "building 1 system(s) on root@bld1")

	// A build host that cannot build the platform: the host is not touched.
	r = skiffOn(t, l, "deploy", "armb", "--build-host", "bld2", "--flake", flake("3"))
	wantCode(t, r, 3)
	wantContains(t, "errors", r.stderr, "armb: its system failed to build on bld2", "aarch64-linux", "nix-store --read-log")
	if p := profileOf(t, l, "armb"); p != "system-2-link" {
		t.Errorf("a failed build changed armb's profile: %q", p)
	}

	r = skiffOn(t, l, "deploy", "armb", "--build-host", "-oProxyCommand=x", "--flake", flake("2"))
	wantCode(t, r, 2)
}

// colmena's deployment.buildOnTarget: an aarch64-linux host whose own nix
// builds its platform (as a Raspberry Pi builds its own system) is built
// on itself, from a deploying machine that cannot build aarch64-linux;
// nothing is copied from here and the system never lands in this
// machine's store. colmena's other settings evaluate as they are, and a
// privilegeEscalationCommand that is not sudo is refused before any host
// is touched.
func TestBuildOnTargetBuildsOnTheHostItself(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "bot1", ExtraNixConf: "extra-platforms = aarch64-linux"})
	colmena := `deployment.allowLocalDeployment = false; deployment.replaceUnknownProfiles = true; `
	flake := writeFlake(t, host("bot1", fmt.Sprintf(`generation = %d; system = "aarch64-linux"; deployment.buildOnTarget = true; `+
		`deployment.privilegeEscalationCommand = [ "sudo" "-H" "--" ]; `, unbuilt())+colmena))
	r := skiffOn(t, l, "-x", "deploy", "--flake", flake)
	wantCode(t, r, 0)
	wantContains(t, "progress", r.stderr, "building 1 system(s) on root@bot1", "bot1: copy: nothing to copy")
	sys := execIn(t, l, "bot1", "readlink", "/run/current-system")
	if !strings.Contains(sys, "nixos-system-bot1") || profileOf(t, l, "bot1") != "system-1-link" {
		t.Fatalf("bot1 runs %q, profile %q", sys, profileOf(t, l, "bot1"))
	}
	if err := exec.Command("nix-store", "--check-validity", sys).Run(); err == nil {
		t.Errorf("bot1's system %s was stored on the deploying machine", sys)
	}
	if n := traced(r.stderr, "nix", " build "); n != 0 {
		t.Errorf("the deploying machine ran nix build %d time(s):\n%s", n, r.stderr)
	}

	doas := writeFlake(t, host("bot1", fmt.Sprintf(`generation = %d; deployment.targetUser = "deploy"; deployment.privilegeEscalationCommand = [ "doas" ];`, unbuilt())))
	r = skiffOn(t, l, "-x", "deploy", "--flake", doas)
	wantCode(t, r, 2)
	wantContains(t, "errors", r.stderr, `bot1: deployment.privilegeEscalationCommand "doas" is not sudo`, "skiff: hint: skiff gains root through sudo only")
	if n := traced(r.stderr, "ssh", ""); n != 0 {
		t.Errorf("a refused setting touched the host (%d ssh commands):\n%s", n, r.stderr)
	}
}
