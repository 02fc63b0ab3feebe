package flake

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/keys"
)

func TestDecodeSettings(t *testing.T) {
	got, err := decodeSettings("web1", json.RawMessage(`{"targetHost":"10.0.0.5","targetPort":2222,"targetUser":"deploy","tags":["web","eu"],"critical":true,`+
		`"buildHost":"builder","buildOnTarget":false,"privilegeEscalationCommand":["sudo","-H","--"],"allowLocalDeployment":true,"replaceUnknownProfiles":false,"healthChecks":{"commands":["true"],"urls":["http://x/"],"timeout":5},"keys":{"a":{"keyCommand":["pass","show","a"],"user":"deploy","uploadAt":"post-activation"},"b":{"text":"x","name":"b.pem","destDir":"/var/keys","permissions":"0640","group":"keys","keyFile":null}},"targetPort2":"x"}`))
	text := "x"
	want := Settings{TargetHost: "10.0.0.5", TargetPort: 2222, TargetUser: "deploy", Tags: []string{"web", "eu"}, Critical: true, BuildHost: "builder",
		PrivilegeEscalationCommand: []string{"sudo", "-H", "--"},
		HealthChecks:               HealthChecks{Commands: []string{"true"}, URLs: []string{"http://x/"}, Timeout: 5},
		Keys: map[string]keys.Spec{
			"a": {Name: "a", KeyCommand: []string{"pass", "show", "a"}, DestDir: "/run/keys", User: "deploy", Group: "root", Permissions: "0600", UploadAt: "post-activation"},
			"b": {Name: "b.pem", Text: &text, DestDir: "/var/keys", User: "root", Group: "keys", Permissions: "0640", UploadAt: "pre-activation"},
		}}
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Error(d)
	}
	for _, empty := range []string{``, `null`, `{}`, `{"targetHost":null,"healthChecks":null}`} {
		if got, err := decodeSettings("web1", json.RawMessage(empty)); err != nil || !cmp.Equal(got, Settings{}) {
			t.Errorf("%q: %+v, %v", empty, got, err)
		}
	}
}

// A setting of the wrong type names the host, the setting, the type it
// must have and the one it has, as a usage error.
func TestDecodeSettingsNamesTheWrongType(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`"oops"`, `deployment must be an attribute set, not a string ("oops")`},
		{`[1]`, `deployment must be an attribute set, not a list`},
		{`{"targetHost":22}`, `deployment.targetHost must be a string, not an integer (22)`},
		{`{"targetPort":"22;id"}`, `deployment.targetPort must be an integer (a port number), not a string ("22;id")`},
		{`{"targetPort":22.5}`, `deployment.targetPort must be an integer (a port number), not a float (22.5)`},
		{`{"targetUser":["root"]}`, `deployment.targetUser must be a string, not a list`},
		{`{"tags":"web"}`, `deployment.tags must be a list of strings, not a string ("web")`},
		{`{"tags":["web",1]}`, `element 2 of deployment.tags must be a string, not an integer (1)`},
		{`{"critical":"yes"}`, `deployment.critical must be a boolean, not a string ("yes")`},
		{`{"buildHost":{"host":"b"}}`, `deployment.buildHost must be a string, not an attribute set`},
		{`{"buildOnTarget":"yes"}`, `deployment.buildOnTarget must be a boolean, not a string ("yes")`},
		{`{"privilegeEscalationCommand":"sudo -H --"}`, `deployment.privilegeEscalationCommand must be a list of strings, not a string ("sudo -H --")`},
		{`{"healthChecks":["true"]}`, `deployment.healthChecks must be an attribute set { commands; urls; timeout; }, not a list`},
		{`{"healthChecks":{"commands":"true"}}`, `deployment.healthChecks.commands must be a list of strings, not a string ("true")`},
		{`{"healthChecks":{"urls":[null]}}`, `element 1 of deployment.healthChecks.urls must be a string, not null`},
		{`{"healthChecks":{"timeout":"10s"}}`, `deployment.healthChecks.timeout must be an integer (seconds), not a string ("10s")`},
		{`{"keys":["a"]}`, `deployment.keys must be an attribute set of keys, not a list`},
		{`{"keys":{"a":"secret"}}`, `deployment.keys.a must be an attribute set, not a string`},
		{`{"keys":{"a":{"text":["secret"]}}}`, `deployment.keys.a.text must be a string, not a list`},
		{`{"keys":{"a":{"keyCommand":"pass show a"}}}`, `deployment.keys.a.keyCommand must be a list of strings, not a string ("pass show a")`},
		{`{"keys":{"a":{"permissions":600}}}`, `deployment.keys.a.permissions must be a string, not an integer (600)`},
	} {
		_, err := decodeSettings("web1", json.RawMessage(tc.json))
		fe, ok := fault.As(err)
		if !ok || fe.Class != fault.Usage || fe.Host != "web1" || fe.Msg != tc.want || fe.Hint == "" {
			t.Errorf("%s: %v (%+v), want %q", tc.json, err, fe, tc.want)
		}
	}
}

func TestEvalErrorNamesTheHost(t *testing.T) {
	ref := Ref{URL: "/srv/infra", Dir: "/srv/infra"}
	features := "nix --extra-experimental-features 'nix-command flakes' eval"
	for _, tc := range []struct {
		stderr, host, msg, hint string
	}{
		{"error: boom in web1\n\n       … while evaluating the attribute 'drvPath'\n\n       at /nix/store/7zwfgkq0d3dkcqlxhhy4aja3f4dzvd4s-source/web1.nix:3:22:\n\n" +
			"       … skiff: evaluating nixosConfigurations.web1\n\n       at «string»:1:717:\n",
			"web1", "cannot evaluate nixosConfigurations.web1.config.system.build.toplevel: error: boom in web1; at /srv/infra/web1.nix:3:22",
			features + " '/srv/infra#nixosConfigurations.web1.config.system.build.toplevel'"},
		{"error: no host\n\n       … skiff: evaluating the deployment settings of darwinConfigurations.mac1\n\n       … skiff: evaluating darwinConfigurations.mac1\n",
			"mac1", "cannot evaluate darwinConfigurations.mac1.config.deployment: error: no host",
			features + " '/srv/infra#darwinConfigurations.mac1.config.deployment'"},
		// Newer Nix: "error:" alone, the trace from the outside in, the
		// message last.
		{"error:\n       … skiff: evaluating nixosConfigurations.web2\n\n       … skiff: evaluating the deployment settings of nixosConfigurations.web2\n\n" +
			"       … while evaluating attribute 'targetHost'\n         at /nix/store/7zwfgkq0d3dkcqlxhhy4aja3f4dzvd4s-source/flake.nix:4:9:\n\n       error: web2 has no address\n",
			"web2", "cannot evaluate nixosConfigurations.web2.config.deployment: error: web2 has no address; at /srv/infra/flake.nix:4:9",
			features + " '/srv/infra#nixosConfigurations.web2.config.deployment'"},
		// A node of colmena's evaluated hive.
		{"error: no disk\n\n       … skiff: evaluating colmenaHive.nodes.db1\n",
			"db1", "cannot evaluate colmenaHive.nodes.db1.config.system.build.toplevel: error: no disk",
			features + " '/srv/infra#colmenaHive.nodes.db1.config.system.build.toplevel'"},
		{"error: syntax error, unexpected end of file\n\n       at /nix/store/7zwfgkq0d3dkcqlxhhy4aja3f4dzvd4s-source/flake.nix:5:15:\n",
			"", "cannot evaluate flake /srv/infra: error: syntax error, unexpected end of file; at /srv/infra/flake.nix:5:15",
			features + " '/srv/infra#nixosConfigurations' --apply builtins.attrNames"},
	} {
		err := evalError(&command.Error{Argv: []string{"nix"}, ExitCode: 1, Stderr: tc.stderr}, ref)
		fe, ok := fault.As(err)
		if !ok || fe.Class != fault.Eval || fe.Host != tc.host || fe.Msg != tc.msg || !strings.Contains(fe.Hint, `"`+tc.hint+`"`) {
			t.Errorf("%q:\n got %+v\nwant host %q msg %q hint %q", tc.stderr, fe, tc.host, tc.msg, tc.hint)
		}
		if strings.Contains(fe.Msg, "«string»") {
			t.Errorf("message points into skiff's expression: %s", fe.Msg)
		}
	}
}
