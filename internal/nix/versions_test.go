package nix

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/command"
)

// The version strings of the releases users run, as "nix --version" prints
// them.
var (
	nix28  = "nix (Nix) 2.8.0\n"
	nix218 = "nix (Nix) 2.18.1\n"
	nix226 = "nix (Nix) 2.26.3\n"
	lix291 = "nix (Lix, like Nix) 2.91.1\n"
	det36  = "nix (Determinate Nix 3.6.2) 2.29.0\n"
	nix234 = "nix (Nix) 2.34.8\n"
)

func mustVersion(t *testing.T, out string) Version {
	t.Helper()
	v, err := ParseVersion(out)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want Version
	}{
		{nix28, Version{Major: 2, Minor: 8}},
		{"nix-store (Nix) 2.26.3\n", Version{Major: 2, Minor: 26}},
		{lix291, Version{Major: 2, Minor: 91, Lix: true}},
		{det36, Version{Major: 2, Minor: 29}}, // the Nix version, not Determinate's own
		{"2.24.9", Version{Major: 2, Minor: 24}},
	} {
		if got := mustVersion(t, tc.out); got != tc.want {
			t.Errorf("ParseVersion(%q) = %v, want %v", tc.out, got, tc.want)
		}
	}
	if _, err := ParseVersion("nix"); err == nil {
		t.Error("no version parsed")
	}
}

// Which releases behave the new way of each Difference: one row per
// Difference, one column per release.
func TestDifferencesByRelease(t *testing.T) {
	releases := []string{nix28, nix218, nix226, lix291, det36, nix234}
	want := map[string][]bool{
		//                        2.8    2.18   2.26  Lix    Det 2.29  2.34
		BuildPrintOutPaths.Name: {false, true, true, true, true, true},
		DerivedPathOutputs.Name: {false, true, true, true, true, true},
		PathInfoObject.Name:     {false, false, true, false, true, true},
		ConfigShow.Name:         {false, false, true, false, true, true},
		PathInfoJSONFormat.Name: {false, false, false, false, false, true},
	}
	if len(want) != len(Differences) {
		t.Fatalf("%d rows for %d differences: every Difference needs a row", len(want), len(Differences))
	}
	for _, d := range Differences {
		if d.Name == "" || d.Before == "" || d.After == "" || d.Handled == "" || d.Since.Major == 0 {
			t.Errorf("difference %+v is not fully described", d)
		}
		var got []bool
		for _, r := range releases {
			got = append(got, mustVersion(t, r).Has(d))
		}
		if diff := cmp.Diff(want[d.Name], got); diff != "" {
			t.Errorf("%s (since %v): (-want +got)\n%s", d.Name, d.Since, diff)
		}
	}
}

// DerivedPathOutputs: the argument that builds a derivation's output.
func TestBuildTargetByRelease(t *testing.T) {
	for _, tc := range []struct{ out, want string }{
		{nix28, "/nix/store/x.drv"},
		{nix218, "/nix/store/x.drv^out"},
		{nix226, "/nix/store/x.drv^out"},
		{lix291, "/nix/store/x.drv^out"},
		{det36, "/nix/store/x.drv^out"},
	} {
		if got := BuildTarget(mustVersion(t, tc.out), "/nix/store/x.drv"); got != tc.want {
			t.Errorf("%q: BuildTarget = %q, want %q", tc.out, got, tc.want)
		}
	}
}

// BuildPrintOutPaths and DerivedPathOutputs: nix build --json as 2.8 and
// 2.26 print it, and what 2.26 prints for a bare .drv path.
func TestParseBuildResultsByRelease(t *testing.T) {
	want := map[string]string{"/nix/store/d-sys.drv": "/nix/store/o-sys"}
	for name, in := range map[string]string{
		"2.8":  `[{"drvPath":"/nix/store/d-sys.drv","outputs":{"out":"/nix/store/o-sys"}}]`,
		"2.26": `[{"drvPath":"/nix/store/d-sys.drv","outputs":{"out":"/nix/store/o-sys"},"startTime":1796172526,"stopTime":1796172527}]`,
	} {
		got, err := ParseBuildResults([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s: (-want +got)\n%s", name, d)
		}
	}
	_, err := ParseBuildResults([]byte(`["/nix/store/d-sys.drv"]`))
	if err == nil || !strings.Contains(err.Error(), "built the derivation files /nix/store/d-sys.drv, not their outputs") {
		t.Errorf("bare .drv answer: %v", err)
	}
	if _, err := ParseBuildResults([]byte(`[{"drvPath":"/nix/store/d-sys.drv","outputs":{}}]`)); err == nil {
		t.Error("a result without an out path parsed")
	}
}

// ConfigShow: the subcommand that prints the configuration.
func TestConfigShowArgsByRelease(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want []string
	}{
		{nix28, []string{"show-config", "--json"}},
		{nix218, []string{"show-config", "--json"}},
		{nix226, []string{"config", "show", "--json"}},
		{lix291, []string{"show-config", "--json"}},
		{det36, []string{"config", "show", "--json"}},
	} {
		if d := cmp.Diff(tc.want, ConfigShowArgs(mustVersion(t, tc.out))); d != "" {
			t.Errorf("%q: (-want +got)\n%s", tc.out, d)
		}
	}
}

// ConfigShow: a nix that numbers itself past 2.20 but only knows
// show-config (a fork) still has its configuration read, and one that
// knows neither reports the first error.
func TestReadBuildConfigFallsBack(t *testing.T) {
	dir := t.TempDir()
	script := `#!/bin/sh
case "$*" in
*--version*) echo "nix (Nix) 2.26.3" ;;
*show-config*) [ -e "$0.broken" ] && exit 1; echo '{"system":{"value":"x86_64-linux"},"extra-platforms":{"value":["i686-linux"]},"builders":{"value":""}}' ;;
*) echo "error: 'config' is not a recognised command" >&2; exit 1 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "nix"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	n := &Nix{Run: &command.Runner{}}
	c, err := n.ReadBuildConfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if c.System != "x86_64-linux" || !slices.Equal(c.ExtraPlatforms, []string{"i686-linux"}) {
		t.Errorf("config %+v", c)
	}
	if err := os.WriteFile(filepath.Join(dir, "nix.broken"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := n.ReadBuildConfig(t.Context()); err == nil || !strings.Contains(err.Error(), "config") {
		t.Errorf("neither form works: %v, want the error of config show", err)
	}
}
