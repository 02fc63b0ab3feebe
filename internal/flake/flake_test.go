package flake

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

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
		// colmena's settings skiff cannot honour.
		{PrivilegeEscalationCommand: []string{"doas"}},
		{PrivilegeEscalationCommand: []string{"run0", "--"}},
		{BuildOnTarget: true, BuildHost: "builder"},
	} {
		h := base
		h.Deployment = d
		if err := h.check(); fault.ClassOf(err) != fault.Usage {
			t.Errorf("%+v accepted (%v)", d, err)
		}
	}
	h := base
	for _, d := range []Settings{
		{TargetHost: "10.0.0.5", TargetPort: 2222, TargetUser: "deploy"},
		{TargetUser: "deploy", PrivilegeEscalationCommand: []string{"sudo", "-H", "--"}, BuildOnTarget: true},
	} {
		h.Deployment = d
		if err := h.check(); err != nil {
			t.Errorf("%+v refused: %v", d, err)
		}
	}
}

func TestParseSelectors(t *testing.T) {
	got, err := ParseSelectors([]string{"web1", "web*,@db", " db? "})
	if err != nil {
		t.Fatal(err)
	}
	want := []Selector{
		{Kind: "name", Value: "web1"},
		{Kind: "glob", Value: "web*", Regex: "web.*"},
		{Kind: "tag", Value: "db"},
		{Kind: "glob", Value: "db?", Regex: "db."},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Error(d)
	}
	for _, bad := range []string{"@", "@a b", "web[1]", "*;id", "-x*", "$(id)", "a/b", ""} {
		if _, err := ParseSelectors([]string{bad}); fault.ClassOf(err) != fault.Usage {
			t.Errorf("%q accepted (%v)", bad, err)
		}
	}
}

func TestGlobRegexMatchesLikeAGlob(t *testing.T) {
	re := regexp.MustCompile("^(" + globRegex("web.?-*") + ")$")
	for s, want := range map[string]bool{"web.1-a": true, "web.x-": true, "web.-": false, "webx1-a": false, "web.12-": false} {
		if re.MatchString(s) != want {
			t.Errorf("%q: match %v, want %v", s, !want, want)
		}
	}
}

func TestCheckMatched(t *testing.T) {
	res := evalResult{Names: []string{"db1", "web1"}, Tags: map[string]json.RawMessage{"db1": json.RawMessage(`["db"]`), "web1": json.RawMessage(`["web"]`)},
		Hosts: map[string]json.RawMessage{"web1": nil}}
	sels, _ := ParseSelectors([]string{"web1"})
	if err := checkMatched(sels, res); err != nil {
		t.Error(err)
	}
	for sel, want := range map[string]string{"nope": `unknown host "nope"`, "x*": `no host matches "x*"`, "@gpu": "no host has tag @gpu"} {
		sels, _ := ParseSelectors([]string{sel})
		err := checkMatched(sels, res)
		fe, ok := fault.As(err)
		if !ok || fe.Class != fault.Usage || !strings.Contains(fe.Msg, want) || !strings.Contains(fe.Hint, "known") {
			t.Errorf("%s: %v", sel, err)
		}
	}
}
