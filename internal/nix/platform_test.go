package nix

import (
	"errors"
	"strings"
	"testing"
)

func TestParseBuildConfig(t *testing.T) {
	data := []byte(`{"system":{"value":"x86_64-linux"},"extra-platforms":{"value":["i686-linux"]},
		"builders":{"value":"@/etc/nix/machines; ssh://mac x86_64-darwin,aarch64-darwin - 4"}}`)
	read := func(path string) (string, error) {
		if path == "/etc/nix/machines" {
			return "# builders\nssh://arm aarch64-linux /key 8 1 big-parallel\n", nil
		}
		return "", errors.New("no such file")
	}
	c, err := ParseBuildConfig(data, read)
	if err != nil {
		t.Fatal(err)
	}
	for system, want := range map[string]string{
		"x86_64-linux":   "x86_64-linux natively",
		"i686-linux":     "i686-linux through extra-platforms (binfmt emulation or a compatible CPU)",
		"aarch64-linux":  "aarch64-linux on builder ssh://arm",
		"aarch64-darwin": "aarch64-darwin on builder ssh://mac",
		"riscv64-linux":  "",
	} {
		yes, how := c.CanBuild(system)
		if yes != (want != "") || how != want {
			t.Errorf("CanBuild(%s) = %v %q, want %q", system, yes, how, want)
		}
	}
	if _, err := ParseBuildConfig([]byte("nope"), read); err == nil {
		t.Error("bad JSON accepted")
	}
}

func TestCannotBuildHint(t *testing.T) {
	h := CannotBuildHint("aarch64-linux")
	for _, want := range []string{`boot.binfmt.emulatedSystems = [ "aarch64-linux" ]`, "--build-host", "builders='ssh://BUILDER aarch64-linux'"} {
		if !strings.Contains(h, want) {
			t.Errorf("hint lacks %q: %s", want, h)
		}
	}
}
