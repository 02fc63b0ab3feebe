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
