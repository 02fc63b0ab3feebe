package nix

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// PathInfoObject: both shapes of nix path-info --json (2.26's with the
// fields it adds).
func TestParsePathInfoBothShapes(t *testing.T) {
	old := `[{"path":"/nix/store/b-x","narHash":"sha256-H+0=","narSize":10,"references":["/nix/store/a-y"],"deriver":"/nix/store/d-x.drv"},{"path":"/nix/store/a-y","narSize":5,"references":[]}]`
	newer := `{"/nix/store/b-x":{"ca":null,"deriver":"/nix/store/d-x.drv","narHash":"sha256-H+0=","narSize":10,"references":["/nix/store/a-y"],"registrationTime":1796172526,"signatures":[],"ultimate":true},"/nix/store/a-y":{"narSize":5,"references":[]},"/nix/store/c-gone":null}`
	want := []PathInfo{
		{Path: "/nix/store/a-y", NarSize: 5, References: []string{}},
		{Path: "/nix/store/b-x", NarSize: 10, NarHash: "sha256-H+0=", References: []string{"/nix/store/a-y"}, Deriver: "/nix/store/d-x.drv"},
	}
	for name, in := range map[string]string{"2.8": old, "2.19+": newer} {
		got, err := ParsePathInfo([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s: (-want +got)\n%s", name, d)
		}
	}
	if _, err := ParsePathInfo([]byte("garbage")); err == nil {
		t.Error("garbage parsed")
	}
}

func TestParseBuildFailure(t *testing.T) {
	stderr := `building '/nix/store/aaa-broken.drv'...
error: builder for '/nix/store/aaa-broken.drv' failed with exit code 1;
       last 3 log lines:
       > compiling
       > oh no
       > giving up
       For full logs, run 'nix log /nix/store/aaa-broken.drv'.
error: 1 dependencies of derivation '/nix/store/bbb-system.drv' failed to build
`
	drv, tail := ParseBuildFailure(stderr)
	if drv != "/nix/store/aaa-broken.drv" {
		t.Errorf("drv = %q", drv)
	}
	if want := "  > compiling\n  > oh no\n  > giving up"; tail != want {
		t.Errorf("tail = %q, want %q", tail, want)
	}
}

func TestArgvCarriesFeaturesAndOptions(t *testing.T) {
	n := &Nix{Options: []string{"substituters="}}
	got := n.CopyArgs("ssh://root@h", "/nix/store/p")
	want := []string{"nix", "--extra-experimental-features", "nix-command flakes", "--option", "substituters", "", "copy", "--to", "ssh://root@h", "/nix/store/p"}
	if d := cmp.Diff(want, got); d != "" {
		t.Error(d)
	}
}
