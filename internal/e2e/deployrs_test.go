package e2e

import (
	"strings"
	"testing"

	"github.com/skiffdeploy/skiff/internal/lab"
)

// A deploy-rs flake deploys as it is: each node of outputs.deploy.nodes
// gives the configuration of its name its hostname, sshUser, port
// (sshOpts), magicRollback and confirmTimeout, merged as deploy-rs merges
// them and winning over deployment.*; the node's profile path (deploy-rs's
// activation wrapper) is never evaluated or built, and its other profiles
// are named as not deployed. The command line's --magic-rollback wins
// over a node's. sshOpts that would turn host key checking off are
// refused before any host is touched.
func TestDeployRsFlakeDeploysAsItIs(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "dr1"}, lab.HostSpec{Name: "dr2"})
	hive := func(gen, dr1Opts string) string {
		return `
    nixosConfigurations.dr1 = lib.mkSystem { name = "dr1"; generation = ` + gen + `; };
    nixosConfigurations.dr2 = lib.mkSystem { name = "dr2"; generation = ` + gen + `; deployment.targetHost = "nowhere.invalid"; };
    deploy = {
      sshUser = "root";
      nodes.dr1 = {
        hostname = "dr1";
        sshOpts = ` + dr1Opts + `;
        magicRollback = false;
        profiles.system = { user = "root"; path = throw "deploy-rs's activation wrapper is evaluated"; };
        profiles.home = { user = "alice"; path = throw "the home profile is evaluated"; };
      };
      nodes.dr2 = { hostname = "dr2"; confirmTimeout = 45; profiles.system.path = throw "evaluated"; };
    };`
	}
	r := skiffOn(t, l, "-x", "deploy", "--flake", writeFlakeOutputs(t, hive("1", `[ "-p" "22" ]`)))
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "dr1", "dr2", "deployed")
	wantContains(t, "output", r.stderr, "dr1: eval: the deploy-rs node's other profiles (home) are not deployed")
	port := false
	for _, line := range strings.Split(r.stderr, "\n") {
		port = port || strings.HasPrefix(line, "+ ssh ") && strings.Contains(line, " -p 22 ") && strings.Contains(line, "root@dr1")
	}
	if !port {
		t.Errorf("no ssh command took sshOpts' port:\n%s", r.stderr)
	}
	// A second deploy has a system to return to: dr2 goes through the
	// supervisor with its node's window, dr1 (magicRollback = false) not.
	r = skiffOn(t, l, "deploy", "--flake", writeFlakeOutputs(t, hive("2", `[ "-p" "22" ]`)))
	wantCode(t, r, 0)
	wantContains(t, "output", r.stderr, "dr2: activate: switch-to-configuration test under a supervisor", "unless confirmed within 45s")
	if strings.Contains(r.stderr, "dr1: activate: switch-to-configuration test under a supervisor") {
		t.Errorf("dr1's node sets magicRollback = false, and dr1 was deployed under a supervisor:\n%s", r.stderr)
	}
	for _, h := range []string{"dr1", "dr2"} {
		if got := execIn(t, l, h, "cat", "/run/current-system/etc/lab/generation"); got != "2" {
			t.Errorf("%s runs generation %q, want 2", h, got)
		}
	}

	// The command line's flag wins over the node's magicRollback.
	r = skiffOn(t, l, "deploy", "dr1", "--magic-rollback=true", "--flake", writeFlakeOutputs(t, hive("3", `[ "-p" "22" ]`)))
	wantCode(t, r, 0)
	wantContains(t, "output", r.stderr, "dr1: activate: switch-to-configuration test under a supervisor")

	r = skiffOn(t, l, "-x", "deploy", "--flake", writeFlakeOutputs(t, hive("4", `[ "-o" "StrictHostKeyChecking=no" ]`)))
	wantCode(t, r, 2)
	wantContains(t, "errors", r.stderr, "dr1: deploy-rs's sshOpts", "never turns host key checking off", "ssh-keyscan dr1")
	for _, line := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(line, "+ ssh ") && strings.Contains(line, " -- ") || strings.HasPrefix(line, "+ session") {
			t.Errorf("a refused deploy ran a command on a host: %s", line)
		}
	}
}
