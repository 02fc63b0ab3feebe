package transport

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/command"

	"github.com/skiffdeploy/skiff/internal/fault"
)

func TestClassify(t *testing.T) {
	tgt := Target{Host: "web1", User: "deploy"}
	for _, tc := range []struct {
		stderr string
		want   fault.Class
	}{
		{"ssh: Could not resolve hostname web1: Name or service not known\r\n", fault.DNS},
		{"ssh: connect to host 127.0.0.9 port 22: Connection refused\r\n", fault.Refused},
		{"ssh: connect to host 10.1.1.1 port 22: Connection timed out\r\n", fault.Timeout},
		{"Connection timed out during banner exchange\r\n", fault.Timeout},
		{"ssh: connect to host 10.1.1.1 port 22: No route to host\r\n", fault.Unreach},
		{"deploy@127.0.0.2: Permission denied (publickey).\r\n", fault.Auth},
		{"No ED25519 host key is known for web1 and you have requested strict checking.\r\nHost key verification failed.\r\n", fault.HostKey},
		{"@@@@@@\r\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n", fault.HostKey},
		{"kex_exchange_identification: Connection closed by remote host\r\n", fault.SSH},
	} {
		got := Classify(Peer{Name: "web1", Target: tgt}, tc.stderr)
		if got.Class != tc.want {
			t.Errorf("%q: class %s, want %s", tc.stderr, got.Class, tc.want)
		}
		if got.Host != "web1" || got.Hint == "" || got.Msg == "" {
			t.Errorf("%q: incomplete error %+v", tc.stderr, got)
		}
	}
	// ssh's own reason is kept; when it gave none, the message says so.
	for stderr, want := range map[string]string{
		"kex_exchange_identification: Connection closed by remote host\r\nConnection closed by 127.0.0.2 port 22\r\n": "ssh to deploy@web1 failed: closed by the host before authentication (kex_exchange_identification: Connection closed by remote host; Connection closed by 127.0.0.2 port 22)",
		"kex_exchange_identification: read: Connection reset by peer\r\n":                                             "ssh to deploy@web1 failed: closed by the host before authentication (kex_exchange_identification: read: Connection reset by peer)",
		"": "ssh to deploy@web1 failed: ssh exited with status 255 without a reason",
		"debug1: Reading configuration data /etc/ssh/ssh_config\r\n": "ssh to deploy@web1 failed: ssh exited with status 255 without a reason",
	} {
		if got := Classify(Peer{Name: "web1", Target: tgt}, stderr).Msg; got != want {
			t.Errorf("%q: message %q, want %q", stderr, got, want)
		}
	}
}

func TestArgsKeepHostKeyChecking(t *testing.T) {
	o := Options{ConfigFile: "/lab/ssh_config", Extra: []string{"IdentityFile=/k"}, ControlDir: "/tmp/skiff-ssh-1"}
	args := strings.Join(o.Args(), " ")
	for _, want := range []string{"-F /lab/ssh_config", "BatchMode=yes", "ControlMaster=auto", "ControlPath=/tmp/skiff-ssh-1/%C", "ConnectTimeout=10", "ServerAliveInterval=", "-o IdentityFile=/k"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	if strings.Contains(strings.ToLower(args), "stricthostkeychecking") || strings.Contains(args, "UserKnownHostsFile=/dev/null") {
		t.Errorf("args weaken host key checking: %q", args)
	}
}

func TestValidateRefusesWhiteSpace(t *testing.T) {
	if err := (Options{ConfigFile: "/a b"}).Validate(); err == nil {
		t.Error("config path with a space accepted")
	}
	if err := (Options{Extra: []string{"ProxyCommand=nc %h %p"}}).Validate(); err == nil {
		t.Error("option with spaces accepted")
	}
	if err := (Options{Extra: []string{"Port"}}).Validate(); err == nil {
		t.Error("option without = accepted")
	}
}

func TestStoreURL(t *testing.T) {
	s := &SSH{Target: Target{Host: "web1", User: "deploy"}}
	if got, want := s.StoreURL(true), "ssh://deploy@web1?remote-program=sudo%20-n%20nix-store"; got != want {
		t.Errorf("StoreURL = %q, want %q", got, want)
	}
	s.Target.User = ""
	if got, want := s.StoreURL(false), "ssh://root@web1"; got != want {
		t.Errorf("StoreURL = %q, want %q", got, want)
	}
}

func TestClassifyHostKeyChangedGivesTheFix(t *testing.T) {
	stderr := `@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
The fingerprint for the ED25519 key sent by the remote host is
SHA256:vL0FqAP3HxMw1ccMhPV6KtRh9pUShpSijQhmMKdxRUI.
Offending ED25519 key in /tmp/lab/known_hosts:1
  remove with:
  ssh-keygen -f "/tmp/lab/known_hosts" -R "127.0.185.2"
Host key for 127.0.185.2 has changed and you have requested strict checking.
Host key verification failed.
`
	got := Classify(Peer{Name: "web1", Target: Target{Host: "web1"}}, stderr)
	if got.Class != fault.HostKey {
		t.Fatalf("class %s", got.Class)
	}
	for _, want := range []string{"CHANGED", "ED25519 SHA256:vL0FqAP3HxMw1ccMhPV6KtRh9pUShpSijQhmMKdxRUI", "/tmp/lab/known_hosts line 1"} {
		if !strings.Contains(got.Msg, want) {
			t.Errorf("message %q lacks %q", got.Msg, want)
		}
	}
	if !strings.Contains(got.Hint, `ssh-keygen -f /tmp/lab/known_hosts -R 127.0.185.2`) {
		t.Errorf("hint %q lacks the exact fix", got.Hint)
	}
}

func TestClassifyVerboseOutput(t *testing.T) {
	unknown := "debug1: Server host key: ssh-ed25519 SHA256:abc+/1\r\nNo ED25519 host key is known for 127.0.0.2 and you have requested strict checking.\r\nHost key verification failed.\r\n"
	eff := &Effective{HostName: "127.0.0.2", Port: 2222, KnownHosts: "/lab/known_hosts"}
	got := Classify(Peer{Name: "web1", Target: Target{Host: "web1", Port: 2222}, Eff: eff}, unknown)
	if got.Class != fault.HostKey || !strings.Contains(got.Msg, "ssh-ed25519 SHA256:abc+/1") || !strings.Contains(got.Hint, "ssh-keyscan -p 2222 -t ed25519 127.0.0.2 >> /lab/known_hosts") {
		t.Errorf("unknown key: %+v", got)
	}
	auth := "debug1: Authentications that can continue: publickey\r\ndebug1: Offering public key: /root/.ssh/id_ed25519 ED25519 SHA256:k1 explicit\r\ndebug1: Offering public key: agent-key RSA SHA256:k2 agent\r\nroot@web1: Permission denied (publickey).\r\n"
	got = Classify(Peer{Name: "web1", Target: Target{Host: "web1"}}, auth)
	if got.Class != fault.Auth || !strings.Contains(got.Msg, "ED25519 SHA256:k1 (/root/.ssh/id_ed25519), RSA SHA256:k2 (agent-key)") {
		t.Errorf("auth: %+v", got)
	}
	none := "debug1: Authentications that can continue: publickey\r\nroot@web1: Permission denied (publickey).\r\n"
	if got := Classify(Peer{Name: "web1", Target: Target{Host: "web1"}}, none); !strings.Contains(got.Msg, "no key was offered") {
		t.Errorf("no key: %+v", got)
	}
	// Debug lines alone never decide the class.
	if got := Classify(Peer{Name: "web1", Target: Target{Host: "web1"}}, "debug1: Host key for x\r\nssh: connect to host 10.1.1.1 port 22: Connection refused\r\n"); got.Class != fault.Refused {
		t.Errorf("debug line misread: %s", got.Class)
	}
}

// An ssh that skiff stops (a deadline) exits 255 without a word once it
// has connected: that is not a failure to reach the host.
func TestStoppedSSHIsNotAFailureToConnect(t *testing.T) {
	dir := t.TempDir()
	fake := "#!/bin/sh\ntrap 'kill $!; exit 255' TERM\nsleep 30 &\nwait\n"
	if err := os.WriteFile(filepath.Join(dir, "ssh"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	s := &SSH{Target: Target{Host: "web1"}, Run: &command.Runner{}, Name: "web1"}
	_, err := s.Command(ctx, Exec{Argv: []string{"true"}, Fresh: true})
	if c := fault.ClassOf(err); c != "" || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v (class %q), want the deadline, unclassified", err, c)
	}
}

func TestParseEffective(t *testing.T) {
	out := "user deploy\nhostname 10.0.0.5\nport 2222\nproxyjump bastion\nproxycommand none\nhostkeyalias none\nhashknownhosts no\nuserknownhostsfile ~/.ssh/known_hosts ~/.ssh/known_hosts2\n"
	got := ParseEffective(out)
	want := Effective{HostName: "10.0.0.5", User: "deploy", Port: 2222, ProxyJump: "bastion", KnownHosts: "~/.ssh/known_hosts"}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got := ParseEffective("hostname a\nproxyjump none\nhostkeyalias web1-key\nhashknownhosts yes\n"); got.ProxyJump != "" || got.Port != 22 || got.HostKeyAlias != "web1-key" || !got.Hashed {
		t.Errorf("defaults: %+v", got)
	}
}

// The commands in hints are typed after skiff exits: they carry the run's
// -F file and -o options, never its private ControlPath.
func TestHintsUseTheSSHConfiguration(t *testing.T) {
	opts := Options{ConfigFile: "/lab/ssh_config", Extra: []string{"IdentityFile=/k"}, ControlDir: "/tmp/skiff-ssh-1"}
	p := Peer{Name: "web1", Target: Target{Host: "web1"}, Options: opts}
	unknown := "No ED25519 host key is known for 127.0.0.2 and you have requested strict checking.\r\nHost key verification failed.\r\n"
	changed := "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nThe fingerprint for the ED25519 key sent by the remote host is\nSHA256:abc.\n" +
		"Offending ED25519 key in /lab/known_hosts:1\n  remove with:\n  ssh-keygen -f \"/lab/known_hosts\" -R \"127.0.0.2\"\nHost key verification failed.\n"
	for _, tc := range []struct {
		name   string
		eff    *Effective
		stderr string
		want   []string
	}{
		{"timeout", nil, "ssh: connect to host 10.1.1.1 port 22: Connection timed out\r\n",
			[]string{`"ssh -F /lab/ssh_config -o IdentityFile=/k -v root@web1"`}},
		{"auth", nil, "root@web1: Permission denied (publickey).\r\n", []string{`"ssh -F /lab/ssh_config -o IdentityFile=/k -v root@web1"`}},
		{"dns", nil, "ssh: Could not resolve hostname web1: Name or service not known\r\n", []string{`"ssh -F /lab/ssh_config -o IdentityFile=/k -G web1 | grep`}},
		{"unknown key", &Effective{HostName: "127.0.0.2", Port: 22, KnownHosts: "/lab/known_hosts"}, unknown, []string{
			`"ssh-keyscan -p 22 -t ed25519 127.0.0.2 >> /lab/known_hosts"`,
			`"ssh-keygen -lF 127.0.0.2 -f /lab/known_hosts"`, `"ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"`}},
		{"unknown key, other port", &Effective{HostName: "10.0.0.5", Port: 2200, KnownHosts: "/root/.ssh/known_hosts"}, unknown, []string{
			`"ssh-keyscan -p 2200 -t ed25519 10.0.0.5 >> /root/.ssh/known_hosts"`, `"ssh-keygen -lF '[10.0.0.5]:2200' -f /root/.ssh/known_hosts"`}},
		{"unknown key, alias", &Effective{HostName: "10.0.0.5", Port: 22, KnownHosts: "~/.ssh/known hosts", HostKeyAlias: "web1-key"}, unknown, []string{
			`"ssh-keyscan -p 22 -t ed25519 10.0.0.5 | sed 's/^[^#][^ ]*/web1-key/' >> ~/'.ssh/known hosts'"`, `"ssh-keygen -lF web1-key -f ~/'.ssh/known hosts'"`}},
		{"unknown key, hashed", &Effective{HostName: "10.0.0.5", Port: 22, KnownHosts: "/k", Hashed: true}, unknown, []string{`"ssh-keyscan -H -p 22 -t ed25519 10.0.0.5 >> /k"`}},
		{"unknown key, jump", &Effective{HostName: "10.0.0.5", Port: 22, KnownHosts: "/k", ProxyJump: "bastion"}, unknown, []string{
			`"ssh -F /lab/ssh_config -o IdentityFile=/k bastion ssh-keyscan -p 22 -t ed25519 10.0.0.5 >> /k"`}},
		{"changed key", &Effective{HostName: "127.0.0.2", Port: 22, KnownHosts: "/lab/known_hosts"}, changed, []string{
			`"ssh-keygen -f /lab/known_hosts -R 127.0.0.2"`, `"ssh-keyscan -p 22 -t ed25519 127.0.0.2 >> /lab/known_hosts"`, "attack"}},
	} {
		p := p
		p.Eff = tc.eff
		got := Classify(p, tc.stderr)
		for _, w := range tc.want {
			if !strings.Contains(got.Hint, w) {
				t.Errorf("%s: hint %q lacks %q", tc.name, got.Hint, w)
			}
		}
		if strings.Contains(got.Hint, "ControlPath") || strings.Contains(got.Hint, "skiff-ssh-1") {
			t.Errorf("%s: hint names the run's ControlPath: %q", tc.name, got.Hint)
		}
	}
	// Without ssh -G nothing is guessed: no ssh-keyscan of a name it
	// does not resolve.
	if got := Classify(p, unknown); strings.Contains(got.Hint, "ssh-keyscan") {
		t.Errorf("unresolved peer: %q", got.Hint)
	}
	s := &SSH{Target: Target{Host: "web1", Port: 2222, User: "deploy"}, Options: opts}
	if got, want := s.HintOpts(), "-F /lab/ssh_config -o IdentityFile=/k -p 2222"; got != want {
		t.Errorf("HintOpts = %q, want %q", got, want)
	}
	if got, want := s.ByHand("sudo", "nix-collect-garbage"), "ssh -F /lab/ssh_config -o IdentityFile=/k -p 2222 deploy@web1 sudo nix-collect-garbage"; got != want {
		t.Errorf("ByHand = %q, want %q", got, want)
	}
}

// A remote command whose words the remote shell would split or expand is
// quoted for it, then for the local shell.
func TestByHandQuotesForBothShells(t *testing.T) {
	tgt := Target{Host: "web1"}
	for _, tc := range []struct {
		remote []string
		want   string
	}{
		{nil, "ssh root@web1"},
		{[]string{"journalctl", "-u", "demo-web.service", "-n", "50"}, "ssh root@web1 journalctl -u demo-web.service -n 50"},
		{[]string{"journalctl", "-u", "a b.service"}, `ssh root@web1 'journalctl -u '\''a b.service'\'''`},
	} {
		if got := ByHand(Options{}, tgt, nil, tc.remote...); got != tc.want {
			t.Errorf("ByHand(%q) = %s, want %s", tc.remote, got, tc.want)
		}
	}
}

// A local target runs argv on this machine as it is: no ssh, no quoting
// for a remote shell, the same runner (so -x traces it).
func TestLocalRunsWithoutSSH(t *testing.T) {
	var trace strings.Builder
	s := &SSH{Target: Target{Host: "localhost", User: "deploy", Local: true}, Options: Options{ControlDir: "/tmp/skiff-ssh-1"},
		Run: &command.Runner{Trace: &trace}, Name: "h1"}
	for _, tc := range []struct {
		argv  []string
		stdin string
		want  string
	}{
		{[]string{"printf", "%s|", "a b", "$HOME", "'q'"}, "", "a b|$HOME|'q'|"},
		{[]string{"cat"}, "input\n", "input\n"},
		{[]string{"sh", "-c", `printf '%s' "$1"`, "sh", "x;y"}, "", "x;y"},
	} {
		var in *strings.Reader
		e := Exec{Argv: tc.argv, Fresh: true}
		if tc.stdin != "" {
			in = strings.NewReader(tc.stdin)
			e.Stdin = in
		}
		res, err := s.Command(context.Background(), e)
		if err != nil {
			t.Fatalf("%q: %v", tc.argv, err)
		}
		if string(res.Stdout) != tc.want {
			t.Errorf("%q: stdout %q, want %q", tc.argv, res.Stdout, tc.want)
		}
	}
	if strings.Contains(trace.String(), "ssh") || !strings.Contains(trace.String(), "+ printf") {
		t.Errorf("trace of local commands:\n%s", trace.String())
	}
	s.Close(context.Background()) // nothing to close: runs nothing
	if strings.Contains(trace.String(), "ssh") {
		t.Errorf("Close ran ssh:\n%s", trace.String())
	}
}

func TestLocalTargetInMessages(t *testing.T) {
	tgt := Target{Host: "localhost", User: "deploy", Local: true}
	s := &SSH{Target: tgt, Options: Options{ConfigFile: "/lab/ssh_config"}}
	for _, tc := range []struct{ got, want string }{
		{tgt.String(), "deploy@localhost (this machine, no ssh)"},
		{s.ByHand("cat", "/run/skiff/act-1/log"), "cat /run/skiff/act-1/log"},
		{s.ByHand("sudo", "-n", "--", "sh", "-c", "echo $HOME"), "sudo -n -- sh -c 'echo $HOME'"},
		{s.ByHand(), "true"},
		{s.StoreURL(true), "auto"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	lt, err := LocalTarget()
	if err != nil {
		t.Fatal(err)
	}
	if !lt.Local || lt.User == "" || lt.Host != "localhost" {
		t.Errorf("LocalTarget() = %+v", lt)
	}
}
