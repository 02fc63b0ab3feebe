package flake

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/nix"
)

func TestSSHOptsPort(t *testing.T) {
	for _, tc := range []struct {
		opts []string
		port int
		err  string // in the message, then in the hint after "|"
	}{
		{nil, 0, ""},
		{[]string{"-p", "2222"}, 2222, ""},
		{[]string{"-p2222"}, 2222, ""},
		{[]string{"-o", "Port=2201"}, 2201, ""},
		{[]string{"-oPort=2201"}, 2201, ""},
		{[]string{"-o", "Port 2201"}, 2201, ""},
		{[]string{"-p", "0"}, 0, `invalid port "0"|1 to 65535`},
		{[]string{"-p"}, 0, "-p has no value"},
		{[]string{"-p", "22;id"}, 0, `invalid port "22;id"`},
		{[]string{"-o", "StrictHostKeyChecking=no"}, 0, "never turns host key checking off|ssh-keyscan web1.example.com"},
		{[]string{"-oUserKnownHostsFile=/dev/null"}, 0, "never turns host key checking off"},
		{[]string{"-o", "stricthostkeychecking no"}, 0, "never turns host key checking off"},
		{[]string{"-i", "~/.ssh/deploy"}, 0, `"-i" is not taken|~/.ssh/config, which skiff's ssh reads: "Host web1.example.com"`},
		{[]string{"-A"}, 0, `"-A" is not taken`},
		{[]string{"-o", "ProxyCommand=nc %h %p"}, 0, `"-oProxyCommand=nc %h %p" is not taken`},
	} {
		port, err := sshOptsPort(tc.opts, "web1.example.com")
		if tc.err == "" {
			if err != nil || port != tc.port {
				t.Errorf("%q: got %d, %+v; want %d", tc.opts, port, err, tc.port)
			}
			continue
		}
		msg, hint, _ := strings.Cut(tc.err, "|")
		if err == nil || !strings.Contains(err.msg, msg) || !strings.Contains(err.hint, hint) {
			t.Errorf("%q: got %d, %+v; want an error with %q and hint %q", tc.opts, port, err, msg, hint)
		}
	}
}

func TestApplyDeployRs(t *testing.T) {
	yes, no := true, false
	base := Settings{TargetHost: "old", TargetUser: "root", Tags: []string{"web"}}
	s := base
	d := deployRs{Hostname: "10.0.0.5", SSHUser: "deploy", User: "root", SSHOpts: []string{"-p", "2222"}, MagicRollback: &no,
		ConfirmTimeout: 60, RemoteBuild: true, Sudo: "sudo -u", Profiles: []string{"home", "system"}}
	if err := applyDeployRs("web1", d, &s, "alice"); err != nil {
		t.Fatal(err)
	}
	want := Settings{TargetHost: "10.0.0.5", TargetUser: "deploy", TargetPort: 2222, Tags: []string{"web"}, BuildOnTarget: true,
		MagicRollback: &no, ConfirmTimeout: 60, OtherProfiles: []string{"home"}}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got %+v\nwant %+v", s, want)
	}
	// What a node leaves unset keeps the configuration's settings, but
	// the login: without sshUser, deploy-rs logs in as the local user.
	s = base
	if err := applyDeployRs("web1", deployRs{MagicRollback: &yes, Profiles: []string{"system"}}, &s, "alice"); err != nil {
		t.Fatal(err)
	}
	if s.TargetHost != "old" || s.TargetUser != "alice" || s.MagicRollback == nil || !*s.MagicRollback || s.OtherProfiles != nil {
		t.Errorf("unset settings changed: %+v", s)
	}
	s = base
	err := applyDeployRs("web1", deployRs{}, &s, "Alice Smith")
	if fe, ok := fault.As(err); !ok || !strings.Contains(fe.Msg, `this user's name "Alice Smith"`) || !strings.Contains(fe.Hint, "set sshUser") {
		t.Errorf("a local user name ssh cannot take: got %v", err)
	}

	for _, tc := range []struct {
		d    deployRs
		want string
	}{
		{deployRs{Hostname: "-oProxyCommand=id"}, `invalid deploy.nodes.web1.hostname "-oProxyCommand=id"`},
		{deployRs{Hostname: "a b"}, `invalid deploy.nodes.web1.hostname "a b"`},
		{deployRs{SSHUser: "root;id"}, `invalid deploy-rs sshUser "root;id"`},
		{deployRs{User: "alice"}, `deploy-rs's user "alice" would activate the system as a user that is not root`},
		{deployRs{ProfilePath: "/nix/var/nix/profiles/per-user/alice/system"}, "is not the system profile"},
		{deployRs{Sudo: "doas -u"}, `deploy-rs's sudo "doas -u" is not sudo`},
		{deployRs{ConfirmTimeout: 7200}, "invalid deploy-rs confirmTimeout 7200"},
		{deployRs{SSHOpts: []string{"-o", "StrictHostKeyChecking=no"}}, "never turns host key checking off"},
	} {
		s := base
		err := applyDeployRs("web1", tc.d, &s, "alice")
		fe, ok := fault.As(err)
		if !ok || fe.Class != fault.Usage || fe.Host != "web1" || !strings.Contains(fe.Msg, tc.want) || fe.Hint == "" {
			t.Errorf("%+v: got %v, want a usage error on web1 with %q", tc.d, err, tc.want)
		}
	}
}

func TestDecodeDeployRsNamesTheWrongType(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{`{"hostname":22}`, "deploy-rs's hostname must be a string, not an integer (22) (deploy.nodes.web1, or the deploy or profiles.system level)"},
		{`{"sshOpts":"-p 2222"}`, "deploy-rs's sshOpts must be a list of strings"},
		{`{"sshOpts":["-p",2222]}`, "element 2 of deploy-rs's sshOpts must be a string"},
		{`{"magicRollback":"no"}`, "deploy-rs's magicRollback must be a boolean"},
		{`"web1"`, "deploy.nodes.web1 must be an attribute set"},
	} {
		_, err := decodeDeployRs("web1", json.RawMessage(tc.raw))
		fe, ok := fault.As(err)
		if !ok || fe.Class != fault.Usage || !strings.Contains(fe.Msg, tc.want) || !strings.Contains(fe.Hint, "deploy.nodes.NAME = {") {
			t.Errorf("%s: got %v, want %q", tc.raw, err, tc.want)
		}
	}
	d, err := decodeDeployRs("web1", json.RawMessage(`{"hostname":"h","sshUser":null,"profiles":["system"]}`))
	if err != nil || d.Hostname != "h" || d.SSHUser != "" {
		t.Errorf("got %+v, %v", d, err)
	}
}

// A deploy-rs flake evaluates with the real nix: each node's settings
// are merged as deploy-rs merges them (deploy, the node, profiles.system),
// the node's profile path is never evaluated, and a node without a
// configuration of its name is named when asked for.
func TestEvaluateReadsDeployRsNodes(t *testing.T) {
	needNix(t)
	dir := t.TempDir()
	sys := func(name string) string {
		return `{ config = { system.build.toplevel = { drvPath = "/nix/store/00000000000000000000000000000000-` + name + `.drv"; outPath = "/nix/store/00000000000000000000000000000000-` + name + `"; system = "x86_64-linux"; }; nixpkgs.system = "x86_64-linux"; }; }`
	}
	flake := `{
  outputs = { self }: {
    nixosConfigurations.web1 = ` + sys("web1") + `;
    nixosConfigurations.web2 = ` + sys("web2") + `;
    nixosConfigurations.plain = ` + sys("plain") + ` // { config = (` + sys("plain") + `).config // { deployment.buildHost = "localhost"; }; };
    deploy = {
      sshUser = "ops";
      magicRollback = true;
      nodes.web1 = {
        hostname = "10.0.0.5";
        sshOpts = [ "-p" "2222" ];
        confirmTimeout = 45;
        profiles.system = { user = "root"; magicRollback = false; path = throw "the profile path is evaluated"; };
        profiles.home = { user = "alice"; path = throw "the home profile is evaluated"; };
      };
      nodes.web2 = { hostname = "web2.example.com"; sshUser = "deploy"; profiles.system.path = throw "evaluated"; };
      nodes.lonely = { hostname = "lonely"; profiles.system.path = throw "evaluated"; };
      nodes.homeOnly = { hostname = "laptop"; profiles.home.path = throw "evaluated"; };
    };
  };
}
`
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := &nix.Nix{Run: &command.Runner{}}
	ref := Ref{URL: dir, Dir: dir}
	// Every host: the node whose system has no configuration of its
	// name is not left behind in silence.
	_, err := Evaluate(ctx, n, ref, nil)
	if fe, ok := fault.As(err); !ok || fe.Class != fault.Usage || !strings.Contains(fe.Msg, "deploy.nodes.lonely has a system profile and no configuration of its name") {
		t.Errorf("every host, with a node without its configuration: got %v", err)
	}
	hosts, err := Evaluate(ctx, n, ref, []string{"web1", "web2", "plain"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Settings{}
	for _, h := range hosts {
		got[h.Name] = h.Deployment
	}
	no, yes := false, true
	want := map[string]Settings{
		"web1":  {TargetHost: "10.0.0.5", TargetPort: 2222, TargetUser: "ops", MagicRollback: &no, ConfirmTimeout: 45, OtherProfiles: []string{"home"}},
		"web2":  {TargetHost: "web2.example.com", TargetUser: "deploy", MagicRollback: &yes},
		"plain": {},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	_, err = Evaluate(ctx, n, ref, []string{"lonely"})
	fe, ok := fault.As(err)
	if !ok || fe.Class != fault.Usage || !strings.Contains(fe.Msg, "deploy.nodes.lonely has no configuration of its name") ||
		!strings.Contains(fe.Hint, "define nixosConfigurations.lonely") {
		t.Errorf("a node without a configuration: got %v", err)
	}

	// An error in a node's settings names the node and the attribute to
	// look at.
	broken := strings.Replace(flake, `hostname = "10.0.0.5";`, `hostname = throw "no address for web1";`, 1)
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Evaluate(ctx, n, ref, []string{"web1"})
	fe, ok = fault.As(err)
	if !ok || fe.Class != fault.Eval || fe.Host != "web1" || !strings.Contains(fe.Msg, "cannot evaluate deploy.nodes.web1: error: no address for web1") ||
		!strings.Contains(fe.Hint, "#deploy.nodes.web1'") {
		t.Errorf("an error in a node: got %+v", fe)
	}
}

// colmena's deployment.sshOptions: a port is taken as targetPort, any
// other option refused, and two different ports are refused.
func TestTakeSSHOptions(t *testing.T) {
	h := Host{Name: "web1", Deployment: Settings{SSHOptions: []string{"-p", "2222"}}}
	if err := takeSSHOptions(&h); err != nil || h.Deployment.TargetPort != 2222 {
		t.Errorf("got port %d, %v; want 2222", h.Deployment.TargetPort, err)
	}
	h = Host{Name: "web1", Deployment: Settings{TargetPort: 2222, SSHOptions: []string{"-oPort=2222"}}}
	if err := takeSSHOptions(&h); err != nil || h.Deployment.TargetPort != 2222 {
		t.Errorf("the same port twice: got port %d, %v", h.Deployment.TargetPort, err)
	}
	for _, tc := range []struct {
		d    Settings
		want string
	}{
		{Settings{TargetPort: 22, SSHOptions: []string{"-p", "2222"}}, "deployment.sshOptions gives port 2222, deployment.targetPort 22"},
		{Settings{SSHOptions: []string{"-i", "key"}}, `deployment.sshOptions: "-i" is not taken`},
		{Settings{TargetHost: "10.0.0.5", SSHOptions: []string{"-o", "UserKnownHostsFile=/dev/null"}}, "never turns host key checking off"},
	} {
		h := Host{Name: "web1", Deployment: tc.d}
		err := takeSSHOptions(&h)
		fe, ok := fault.As(err)
		if !ok || fe.Class != fault.Usage || fe.Host != "web1" || !strings.Contains(fe.Msg, tc.want) || fe.Hint == "" {
			t.Errorf("%+v: got %v, want %q", tc.d, err, tc.want)
		}
	}
}

// A colmena node whose targetHost is null is deployed only on itself: it
// is left out of a selection, and refused when named or alone.
func TestOverSSH(t *testing.T) {
	hosts := []Host{{Name: "web1"}, {Name: "laptop", LocalOnly: true}, {Name: "web2"}}
	remote, local, err := OverSSH(hosts, nil)
	if err != nil || len(remote) != 2 || remote[0].Name != "web1" || remote[1].Name != "web2" || len(local) != 1 || local[0].Name != "laptop" {
		t.Errorf("every host: got %v, %v, %v", remote, local, err)
	}
	for _, tc := range []struct {
		hosts []Host
		sels  []string
		want  string
	}{
		{hosts, []string{"web1", "laptop"}, "deployment.targetHost is null: this colmena node is deployed only on itself"},
		{hosts[1:2], []string{"lap*"}, "every selected host has deployment.targetHost = null (deployed only on itself): laptop"},
	} {
		_, _, err := OverSSH(tc.hosts, tc.sels)
		fe, ok := fault.As(err)
		if !ok || fe.Class != fault.Usage || !strings.Contains(fe.Msg, tc.want) || !strings.Contains(fe.Hint, "skiff deploy --local") {
			t.Errorf("%v: got %v, want %q", tc.sels, err, tc.want)
		}
	}
}
