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

	raw := writeFlakeOutputs(t, `colmena = { meta = { }; ch1 = { ... }: { }; };`)
	r = skiffOn(t, l, "-x", "deploy", "--flake", raw)
	wantCode(t, r, 2)
	wantContains(t, "errors", r.stderr, "defines no hosts", `colmenaHive = colmena.lib.makeHive self.colmena;`)
	if strings.Contains(r.stderr, "+ ssh ") {
		t.Errorf("a flake without hosts touched a host:\n%s", r.stderr)
	}
}
