package flake

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/skiffdeploy/skiff/internal/keys"
)

// stubLib is the part of nixpkgs' lib that nix/module.nix uses, reduced to
// what describes a declaration: mkOption keeps its arguments, a type is a
// name and its parts. describe turns the module's options into JSON.
const stubLib = `
let
  t = name: extra: { _type = "option-type"; inherit name; } // extra;
  types = {
    str = t "str" { }; bool = t "bool" { }; port = t "port" { }; path = t "path" { };
    nullOr = e: t "nullOr" { elem = e; };
    listOf = e: t "listOf" { elem = e; };
    attrsOf = e: t "attrsOf" { elem = e; };
    either = a: b: t "either" { elems = [ a b ]; };
    enum = vs: t "enum" { values = vs; };
    strMatching = re: t "strMatching" { regex = re; };
    submodule = m: t "submodule" { module = m; };
    ints = { positive = t "positive" { }; between = lo: hi: t "between" { inherit lo hi; }; };
  };
  lib = { inherit types; mkOption = o: o // { _type = "option"; }; };
  args = { inherit lib; name = "NAME"; config = throw "option declarations must not read config"; };
  describeType = ty: removeAttrs ty [ "module" "elem" "elems" ]
    // (if ty ? module then { options = describe ((if builtins.isFunction ty.module then ty.module args else ty.module).options); } else { })
    // (if ty ? elem then { elem = describeType ty.elem; } else { })
    // (if ty ? elems then { elems = map describeType ty.elems; } else { });
  describe = builtins.mapAttrs (n: o:
    if (o._type or "") == "option"
    then { type = describeType o.type; default = o.default or null; description = o.description or ""; }
    else { options = describe o; });
in describe (import (builtins.getEnv "SKIFF_MODULE") args).options
`

type optionDesc struct {
	Type        typeDesc              `json:"type"`
	Default     json.RawMessage       `json:"default"`
	Description string                `json:"description"`
	Options     map[string]optionDesc `json:"options"` // an option group, not an option
}

type typeDesc struct {
	Name    string                `json:"name"`
	Elem    *typeDesc             `json:"elem"`
	Elems   []typeDesc            `json:"elems"`
	Options map[string]optionDesc `json:"options"`
	Regex   string                `json:"regex"`
	Values  []string              `json:"values"`
	Lo, Hi  int
}

// String is a short form of the type: nullOr(strMatching), listOf(str).
func (t typeDesc) String() string {
	switch {
	case t.Elem != nil:
		return t.Name + "(" + t.Elem.String() + ")"
	case len(t.Elems) > 0:
		var s []string
		for _, e := range t.Elems {
			s = append(s, e.String())
		}
		return t.Name + "(" + strings.Join(s, ",") + ")"
	}
	return t.Name
}

func needNix(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nix"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("nix is not installed")
		}
		t.Skip("nix is not installed")
	}
}

func nixEvalJSON(t *testing.T, expr string, env []string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nix", "--extra-experimental-features", "nix-command flakes",
		"eval", "--impure", "--json", "--expr", expr)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix eval: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("nix eval printed %s: %v", b, err)
	}
}

// moduleOptions evaluates nix/module.nix's deployment options with the stub lib.
func moduleOptions(t *testing.T) map[string]optionDesc {
	t.Helper()
	return moduleOptionsOf(t, "module.nix")
}

// moduleOptionsOf is moduleOptions for the module nix/FILE.
func moduleOptionsOf(t *testing.T, file string) map[string]optionDesc {
	t.Helper()
	needNix(t)
	path, err := filepath.Abs(filepath.Join("..", "..", "nix", file))
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]optionDesc
	nixEvalJSON(t, stubLib, []string{"SKIFF_MODULE=" + path}, &top)
	d, ok := top["deployment"]
	if !ok || d.Options == nil {
		t.Fatalf("nix/%s declares no options.deployment group: %v", file, top)
	}
	return d.Options
}

// jsonNames lists the JSON names of a struct's fields: the settings skiff
// decodes from the evaluation.
func jsonNames(v any) []string {
	var names []string
	rt := reflect.TypeOf(v)
	for i := range rt.NumField() {
		if tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ","); tag != "" && tag != "-" {
			names = append(names, tag)
		}
	}
	sort.Strings(names)
	return names
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// declaredNotRead are options the module declares that skiff does not
// read: colmena's, declared so that hives evaluate unchanged.
var declaredNotRead = []string{"allowLocalDeployment", "noSubstitute", "replaceUnknownProfiles"}

// TestModuleDeclaresWhatSkiffReads fails when nix/module.nix and the
// settings skiff decodes (Settings, HealthChecks) name different options.
func TestModuleDeclaresWhatSkiffReads(t *testing.T) {
	opts := moduleOptions(t)
	want := append(jsonNames(Settings{}), declaredNotRead...)
	sort.Strings(want)
	if diff := cmp.Diff(want, sortedKeys(opts)); diff != "" {
		t.Errorf("deployment options of nix/module.nix differ from the settings skiff reads (-read +declared):\n%s", diff)
	}
	hc := opts["healthChecks"].Type.Options
	if diff := cmp.Diff(jsonNames(HealthChecks{}), sortedKeys(hc)); diff != "" {
		t.Errorf("deployment.healthChecks options differ from HealthChecks (-read +declared):\n%s", diff)
	}
	if diff := cmp.Diff(jsonNames(keys.Spec{}), sortedKeys(opts["keys"].Type.Elem.Options)); diff != "" {
		t.Errorf("deployment.keys.* options differ from keys.Spec (-read +declared):\n%s", diff)
	}
	types := map[string]string{}
	for name, o := range opts {
		types[name] = o.Type.String()
		if strings.TrimSpace(o.Description) == "" {
			t.Errorf("deployment.%s has no description", name)
		}
	}
	for name, o := range hc {
		types["healthChecks."+name] = o.Type.String()
	}
	for name, o := range opts["keys"].Type.Elem.Options {
		types["keys.*."+name] = o.Type.String()
	}
	wantTypes := map[string]string{
		"targetHost": "nullOr(strMatching)", "targetPort": "nullOr(port)", "targetUser": "strMatching",
		"tags": "listOf(str)", "critical": "bool", "buildHost": "nullOr(strMatching)",
		"buildOnTarget": "bool", "privilegeEscalationCommand": "listOf(str)",
		"allowLocalDeployment": "bool", "replaceUnknownProfiles": "bool", "sshOptions": "listOf(str)", "noSubstitute": "bool",
		"healthChecks": "submodule", "healthChecks.commands": "listOf(strMatching)",
		"healthChecks.urls": "listOf(strMatching)", "healthChecks.timeout": "between",
		"keys": "attrsOf(submodule)", "keys.*.name": "str", "keys.*.text": "nullOr(str)",
		"keys.*.keyFile": "nullOr(either(str,path))", "keys.*.keyCommand": "nullOr(listOf(str))",
		"keys.*.destDir": "str", "keys.*.user": "str", "keys.*.group": "str",
		"keys.*.permissions": "strMatching", "keys.*.uploadAt": "enum",
	}
	if diff := cmp.Diff(wantTypes, types); diff != "" {
		t.Errorf("option types (-want +declared):\n%s", diff)
	}
}

// TestModuleDefaultsMeanNoSettings decodes the module's defaults as skiff
// decodes a configuration's deployment: they must mean what no setting at
// all means (destination = attribute name, ssh's port, root, 10 s checks).
func TestModuleDefaultsMeanNoSettings(t *testing.T) {
	opts := moduleOptions(t)
	js := map[string]json.RawMessage{}
	for name, o := range opts {
		js[name] = o.Default
	}
	hc := map[string]json.RawMessage{}
	for name, o := range opts["healthChecks"].Type.Options {
		hc[name] = o.Default
	}
	js["healthChecks"], _ = json.Marshal(hc)
	b, _ := json.Marshal(js)
	var got Settings
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("skiff cannot decode the module's defaults %s: %v", b, err)
	}
	want := Settings{TargetUser: "root", HealthChecks: HealthChecks{Timeout: 10}, PrivilegeEscalationCommand: []string{"sudo", "-H", "--"}}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("module defaults decode to (-want +got):\n%s", diff)
	}
	h := Host{Name: "web1", DrvPath: "/nix/store/a.drv", OutPath: "/nix/store/a", Deployment: got}
	if err := h.check(); err != nil {
		t.Errorf("skiff refuses the module's defaults: %v", err)
	}
}

// TestModulePatternsAgreeWithChecks matches values against the module's
// patterns with nix's own regular expressions and against skiff's checks:
// the module must refuse at evaluation exactly what skiff would refuse.
func TestModulePatternsAgreeWithChecks(t *testing.T) {
	opts := moduleOptions(t)
	patterns := map[string]string{
		"targetHost": opts["targetHost"].Type.Elem.Regex,
		"targetUser": opts["targetUser"].Type.Regex,
		"buildHost":  opts["buildHost"].Type.Elem.Regex,
	}
	values := map[string][]string{
		"targetHost": {"web1", "web1.example.com", "10.0.0.5", "[fe80::1%eth0]", "fe80::1", "a-b_c", "-oProxyCommand=id", "a b", "host;id", "x$(id)", "a/b", "-", "é"},
		"targetUser": {"root", "deploy", "_svc", "user.name-1", "machine$", "Root", "-l", "root;id", "a b", "1user"},
		"buildHost":  {"build1", "builder@build1.example.com", "root@10.0.0.7", "[::1]", "-oProxyCommand=id", "a@-b", "@host", "Bob@host", "a b", "user@host@x"},
	}
	var got map[string][]bool
	env, _ := json.Marshal(map[string]any{"patterns": patterns, "values": values})
	nixEvalJSON(t, `let in_ = builtins.fromJSON (builtins.getEnv "SKIFF_CASES"); in
		builtins.mapAttrs (k: vs: map (v: builtins.match in_.patterns.${k} v != null) vs) in_.values`,
		[]string{"SKIFF_CASES=" + string(env)}, &got)
	for setting, vs := range values {
		for i, v := range vs {
			h := Host{Name: "web1", DrvPath: "/nix/store/a.drv", OutPath: "/nix/store/a"}
			switch setting {
			case "targetHost":
				h.Deployment.TargetHost = v
			case "targetUser":
				h.Deployment.TargetUser = v
			case "buildHost":
				h.Deployment.BuildHost = v
			}
			skiff := h.check() == nil
			if got[setting][i] != skiff {
				t.Errorf("deployment.%s = %q: module accepts %v, skiff accepts %v", setting, v, got[setting][i], skiff)
			}
		}
	}
}

// colmenaDeclares are the deployment options colmena's own evaluation
// declares (its src/nix/hive/options.nix, deploymentOptions; sshOptions
// and noSubstitute since colmena 0.5's successors).
var colmenaDeclares = []string{"allowLocalDeployment", "buildOnTarget", "keys", "noSubstitute", "privilegeEscalationCommand",
	"replaceUnknownProfiles", "sshOptions", "tags", "targetHost", "targetPort", "targetUser"}

// nix/colmena.nix declares, for a colmena hive's nodes, exactly the
// settings skiff reads that colmena does not declare, as nix/module.nix
// declares them: with colmena's, every setting skiff reads, and none twice.
func TestColmenaModuleDeclaresWhatColmenaLacks(t *testing.T) {
	all, extra := moduleOptions(t), moduleOptionsOf(t, "colmena.nix")
	var want []string
	for _, name := range jsonNames(Settings{}) {
		if !slices.Contains(colmenaDeclares, name) {
			want = append(want, name)
		}
	}
	if diff := cmp.Diff(want, sortedKeys(extra)); diff != "" {
		t.Errorf("nix/colmena.nix declares (-want +declared):\n%s", diff)
	}
	for name, o := range extra {
		if diff := cmp.Diff(all[name], o); diff != "" {
			t.Errorf("deployment.%s differs from nix/module.nix's (-module.nix +colmena.nix):\n%s", name, diff)
		}
	}
}
