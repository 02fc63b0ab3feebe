package flake

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiffdeploy/skiff/internal/fault"
)

func TestValidName(t *testing.T) {
	for _, ok := range []string{"web1", "db-2", "a.b_c", "X"} {
		if !ValidName(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "-o", ".hidden", "a b", "a;b", "$(id)", "a'b", `a"b`, "a/b", "web1\n", "a${b}"} {
		if ValidName(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseRef(t *testing.T) {
	dir := t.TempDir()
	if _, err := ParseRef(dir); fault.ClassOf(err) != fault.Usage || !strings.Contains(err.Error(), "has no flake.nix") {
		t.Errorf("empty dir: %v", err)
	}
	if _, err := ParseRef(filepath.Join(dir, "nope")); fault.ClassOf(err) != fault.Usage {
		t.Errorf("missing dir: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("{}"), 0o644)
	ref, err := ParseRef(dir)
	if err != nil || ref.URL != dir || ref.Dir != dir {
		t.Errorf("ParseRef = %+v, %v", ref, err)
	}
	ref, err = ParseRef("github:example/fleet")
	if err != nil || ref.URL != "github:example/fleet" || ref.Dir != "" {
		t.Errorf("remote ref = %+v, %v", ref, err)
	}
}

func TestHostCheckRefusesHostileSettings(t *testing.T) {
	base := Host{Name: "web1", DrvPath: "/nix/store/a.drv", OutPath: "/nix/store/a"}
	for _, d := range []Settings{
		{TargetHost: "-oProxyCommand=id"},
		{TargetHost: "a b"},
		{TargetHost: "host;id"},
		{TargetPort: 70000},
		{TargetUser: "root;id"},
		{TargetUser: "-l"},
	} {
		h := base
		h.Deployment = d
		if err := h.check(); fault.ClassOf(err) != fault.Usage {
			t.Errorf("%+v accepted (%v)", d, err)
		}
	}
	h := base
	h.Deployment = Settings{TargetHost: "10.0.0.5", TargetPort: 2222, TargetUser: "deploy"}
	if err := h.check(); err != nil {
		t.Error(err)
	}
}
