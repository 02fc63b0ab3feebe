package e2e

import (
	"fmt"
	"testing"

	"github.com/skiffdeploy/skiff/internal/lab"
)

// A host whose platform this machine cannot build is refused before
// anything is built, with both remedies; the other hosts go on. With the
// platform in extra-platforms the same host just deploys.
func TestCrossArchRefusedBeforeBuild(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "x86a"}, lab.HostSpec{Name: "arm1"})
	dir := writeFlake(t, host("x86a", fmt.Sprintf("generation = %d;", unbuilt()))+host("arm1", `system = "aarch64-linux";`))

	r := skiffOn(t, l, "deploy", "--flake", dir)
	wantCode(t, r, 3)
	wantContains(t, "errors", r.stderr,
		"arm1", "cannot build the system for platform aarch64-linux",
		`boot.binfmt.emulatedSystems = [ "aarch64-linux" ]`, "--build-host", "builders='ssh://BUILDER aarch64-linux'",
		"building 1 system(s)")
	wantContains(t, "summary", r.stdout, "x86a", "deployed", "arm1", "failed")
	if p := profileOf(t, l, "arm1"); p != "" {
		t.Errorf("the refused host's profile was set: %q", p)
	}
	if p := profileOf(t, l, "x86a"); p != "system-1-link" {
		t.Errorf("the other host was not deployed: profile %q", p)
	}

	// This machine's nix can run the lab's /bin/sh builders for any
	// platform: declaring aarch64-linux buildable is all it takes.
	r = skiffOn(t, l, "--nix-option", "extra-platforms=aarch64-linux", "deploy", "arm1", "--flake", dir)
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "arm1", "deployed")
	if p := profileOf(t, l, "arm1"); p != "system-1-link" {
		t.Errorf("arm1 profile %q after a deploy with extra-platforms", p)
	}
}
