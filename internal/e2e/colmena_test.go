package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiffdeploy/skiff/internal/lab"
)

// writeFlakeOutputs is writeFlake with the flake's outputs written whole
// (lib is the example's lib.nix), for outputs other than
// nixosConfigurations.
func writeFlakeOutputs(t *testing.T, outputs string) string {
	t.Helper()
	dir := writeFlake(t, "")
	flake := "{\n  outputs = { self }: let lib = import ./lib.nix; in {\n" + outputs + "\n  };\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sshConfigFile is an ssh configuration file of a test's own.
type sshConfigFile string

func (f sshConfigFile) SSHConfig() string { return string(f) }

// A colmena 0.5 flake deploys as it is: skiff reads the nodes of
// colmena's evaluated hive (outputs.colmenaHive, what colmena.lib.makeHive
// returns: a NixOS configuration for each node, with colmena's deployment
// options and their defaults), beside nixosConfigurations, which wins for
// a name both define. A flake with only colmena's hive as written
// (outputs.colmena) is refused before any host is touched, with the line
// to add; one whose hive's meta.allowApplyAll is false refuses a deploy
// that names no host.
func TestColmenaHiveDeploysAsItIs(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "ch1"}, lab.HostSpec{Name: "ch2"})
	// colmena's defaults for every deployment option, as makeHive's
	// evaluation gives them.
	defaults := func(name, tags string) string {
		return `deployment = { targetHost = "` + name + `"; targetPort = null; targetUser = "root"; allowLocalDeployment = false; buildOnTarget = false; ` +
			`tags = [ ` + tags + ` ]; keys = { }; replaceUnknownProfiles = true; privilegeEscalationCommand = [ "sudo" "-H" "--" ]; };`
	}
	flake := writeFlakeOutputs(t, `
    colmenaHive = {
      meta = { };
      nodes = {
        ch1 = lib.mkSystem { name = "ch1"; generation = 4; `+defaults("ch1", `"hive"`)+` };
        ch2 = lib.mkSystem { name = "ch2"; generation = 4; `+defaults("ch2", `"hive"`)+` };
      };
    };
    nixosConfigurations.ch2 = lib.mkSystem { name = "ch2"; generation = 5; };`)
	r := skiffOn(t, l, "deploy", "--flake", flake)
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "ch1", "ch2", "deployed")
	if got := execIn(t, l, "ch1", "cat", "/run/current-system/etc/lab/generation"); got != "4" {
		t.Errorf("ch1 runs generation %q of the hive, want 4", got)
	}
	if got := execIn(t, l, "ch2", "cat", "/run/current-system/etc/lab/generation"); got != "5" {
		t.Errorf("ch2 runs generation %q, want nixosConfigurations' 5", got)
	}
	// The hive's tags select its nodes; an error in a node names it.
	r = skiffOn(t, l, "deploy", "@hive", "--flake", flake)
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "ch1", "up to date")
	broken := writeFlakeOutputs(t, `colmenaHive.nodes.ch1 = lib.mkSystem { name = "ch1"; generation = 4; `+defaults("ch1", "")+` } // { config = throw "no disk for ch1"; };`)
	r = skiffOn(t, l, "deploy", "--flake", broken)
	wantCode(t, r, 1)
	wantContains(t, "errors", r.stderr, "ch1: cannot evaluate colmenaHive.nodes.ch1", "no disk for ch1")

	// meta.allowApplyAll = false: a deploy must name its hosts; other
	// commands need not.
	guarded := writeFlakeOutputs(t, `
    colmenaHive = {
      meta = { allowApplyAll = false; };
      nodes.ch1 = lib.mkSystem { name = "ch1"; generation = 4; `+defaults("ch1", `"hive"`)+` };
    };`)
	r = skiffOn(t, l, "-x", "deploy", "--flake", guarded)
	wantCode(t, r, 2)
	wantContains(t, "errors", r.stderr, "the flake allows no deploy to every host at once", "colmenaHive.meta.allowApplyAll is false")
	for _, line := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(line, "+ ssh ") && strings.Contains(line, " -- ") || strings.HasPrefix(line, "+ session") {
			t.Errorf("a refused deploy ran a command on a host: %s", line)
		}
	}
	r = skiffOn(t, l, "deploy", "ch1", "--flake", guarded)
	wantCode(t, r, 0)
	r = skiffOn(t, l, "status", "--flake", guarded)
	wantCode(t, r, 0)

	// A node whose targetHost is null is deployed only on itself
	// (colmena's local-only node): left out of a deploy of every host,
	// refused when named. colmena's sshOptions give a port; another
	// option is refused before any host is touched.
	local := func(sshOptions string) string {
		return writeFlakeOutputs(t, `
    colmenaHive = {
      meta = { };
      nodes = {
        ch1 = lib.mkSystem { name = "ch1"; generation = 6; deployment = { targetHost = "ch1"; targetPort = null; targetUser = "root"; sshOptions = `+sshOptions+`; tags = [ ]; }; };
        laptop = lib.mkSystem { name = "laptop"; generation = 6; deployment = { targetHost = null; targetPort = null; targetUser = "root"; allowLocalDeployment = true; tags = [ ]; }; };
      };
    };`)
	}
	r = skiffOn(t, l, "-x", "deploy", "--flake", local(`[ "-p" "22" ]`))
	wantCode(t, r, 0)
	wantContains(t, "output", r.stderr, "laptop: eval: left out: its deployment.targetHost is null", "skiff deploy --local laptop")
	wantContains(t, "summary", r.stdout, "ch1", "deployed")
	if strings.Contains(r.stdout, "laptop") {
		t.Errorf("the local-only node was deployed over ssh:\n%s", r.stdout)
	}
	port := false
	for _, line := range strings.Split(r.stderr, "\n") {
		port = port || strings.HasPrefix(line, "+ ssh ") && strings.Contains(line, " -p 22 ") && strings.Contains(line, "root@ch1")
	}
	if !port {
		t.Errorf("no ssh command took sshOptions' port:\n%s", r.stderr)
	}
	r = skiffOn(t, l, "deploy", "laptop", "--flake", local(`[ ]`))
	wantCode(t, r, 2)
	wantContains(t, "errors", r.stderr, "laptop: deployment.targetHost is null", `skiff deploy --local laptop`)
	r = skiffOn(t, l, "-x", "deploy", "--flake", local(`[ "-o" "StrictHostKeyChecking=accept-new" ]`))
	wantCode(t, r, 2)
	wantContains(t, "errors", r.stderr, "ch1: deployment.sshOptions", "never turns host key checking off")
	for _, line := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(line, "+ ssh ") && strings.Contains(line, " -- ") || strings.HasPrefix(line, "+ session") {
			t.Errorf("a refused deploy ran a command on a host: %s", line)
		}
	}

	// A node whose targetUser is null logs in as its ssh configuration
	// says (colmena passes no user to ssh): here deploy, through sudo.
	nullUser := writeFlakeOutputs(t, `
    colmenaHive = {
      meta = { };
      nodes.ch1 = lib.mkSystem { name = "ch1"; generation = 7; deployment = { targetHost = "ch1"; targetPort = null; targetUser = null; tags = [ ]; }; };
    };`)
	cfg := sshConfigFile(filepath.Join(t.TempDir(), "ssh_config"))
	if err := os.WriteFile(string(cfg), []byte("Host ch1\n  User deploy\n\nInclude "+l.SSHConfig()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = skiffOn(t, cfg, "-x", "deploy", "--flake", nullUser)
	wantCode(t, r, 0)
	wantContains(t, "trace", r.stderr, "ssh -F "+string(cfg)+" -G ch1", "deploy@ch1", "sudo -n")
	if strings.Contains(r.stderr, "root@ch1") {
		t.Errorf("a null targetUser logged in as root:\n%s", r.stderr)
	}
	if got := execIn(t, l, "ch1", "cat", "/run/current-system/etc/lab/generation"); got != "7" {
		t.Errorf("ch1 runs generation %q, want 7", got)
	}
	r = skiffOn(t, cfg, "-x", "status", "--flake", nullUser)
	wantCode(t, r, 0)
	wantContains(t, "status trace", r.stderr, "deploy@ch1")

	raw := writeFlakeOutputs(t, `colmena = { meta = { }; ch1 = { ... }: { }; };`)
	r = skiffOn(t, l, "-x", "deploy", "--flake", raw)
	wantCode(t, r, 2)
	wantContains(t, "errors", r.stderr, "defines no hosts", `colmenaHive = colmena.lib.makeHive self.colmena;`)
	if strings.Contains(r.stderr, "+ ssh ") {
		t.Errorf("a flake without hosts touched a host:\n%s", r.stderr)
	}
}
