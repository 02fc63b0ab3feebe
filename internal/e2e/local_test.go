package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/lab"
)

// skiffInHost runs the skiff binary on a lab host itself, logged in over
// ssh as user (the way someone deploys the machine they sit at), and
// returns its exit code and output.
func skiffInHost(t *testing.T, l *lab.Lab, user, host string, args ...string) result {
	t.Helper()
	return skiffInHostInput(t, l, "", user, host, args...)
}

// skiffInHostInput is skiffInHost with stdin as skiff's standard input.
func skiffInHostInput(t *testing.T, l *lab.Lab, stdin, user, host string, args ...string) result {
	t.Helper()
	argv := append([]string{skiffBinary(t), "-x", "--nix-option", "substituters="}, args...)
	cmd := exec.Command("ssh", "-F", l.SSHConfig(), user+"@"+host, "--", command.Join(argv))
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("ssh %s: %v", host, err)
		}
		code = ee.ExitCode()
	}
	r := result{code, stdout.String(), stderr.String()}
	t.Logf("%s@%s: skiff %s\nexit %d\n--- stdout\n%s--- stderr\n%s", user, host, strings.Join(args, " "), code, r.stdout, r.stderr)
	return r
}

// readableFlake is writeFlake in a directory every user of a lab host can
// read (the test's temporary directory is private to root).
func readableFlake(t *testing.T, configs string) string {
	t.Helper()
	dir := writeFlake(t, configs)
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// noSSH fails when skiff's -x trace shows an ssh or a copy: a local deploy
// runs every command on the machine itself.
func noSSH(t *testing.T, r result) {
	t.Helper()
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "+ ") && (strings.HasPrefix(l, "+ ssh ") || strings.Contains(l, "NIX_SSHOPTS") || strings.Contains(l, "nix copy") || strings.Contains(l, " copy --to")) {
			t.Errorf("a local deploy ran %q", l)
		}
	}
}

// skiff deploy --local on a lab host: built in the host's own store,
// nothing copied, activated under the supervisor without the lockout
// proof, a failing unit rolled back; as root, and as a user with sudo.
func TestDeployLocal(t *testing.T) {
	const pw = "local horse"
	l := newLab(t, lab.HostSpec{Name: "loc1"}, lab.HostSpec{Name: "locpw", SudoPassword: pw})
	// Named after this machine (the lab host shares its host name), so
	// that --local without a name finds it.
	hn, _ := os.Hostname()
	name, _, _ := strings.Cut(hn, ".")
	first := []string{"deploy", "--local"}
	if !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`).MatchString(name) {
		name = "loc1" // not a Nix identifier: named explicitly
		first = append(first, name)
	}
	flake := func(gen, extra string) string {
		return readableFlake(t, host(name, "generation = "+gen+"; "+extra))
	}

	// The first deploy: nothing to return to, a plain switch.
	r := skiffInHost(t, l, "root", "loc1", append(first, "--flake", flake("1", ""), confirm)...)
	wantCode(t, r, 0)
	wantContains(t, "output", r.stderr, "connecting to root@localhost (this machine, no ssh)", "nothing to copy")
	noSSH(t, r)
	if got := profile(t, l, "loc1"); got != "system-1-link" {
		t.Fatalf("profile %q after the first deploy, want system-1-link", got)
	}

	// Supervised switch, confirmed on the machine itself.
	r = skiffInHost(t, l, "root", "loc1", "deploy", "--local", name, "--flake", flake("2", ""), confirm)
	wantCode(t, r, 0)
	wantContains(t, "output", r.stderr, "under a supervisor", "nothing to copy",
		"no ssh to lose: the lockout proof is skipped", "confirmed; system profile at generation 2")
	wantContains(t, "summary", r.stdout, name, "deployed", "1 -> 2")
	noSSH(t, r)
	if strings.Contains(r.stderr, "new ssh connection") {
		t.Errorf("a local deploy confirmed over ssh:\n%s", r.stderr)
	}
	good := running(t, l, "loc1")
	if got := profile(t, l, "loc1"); got != "system-2-link" {
		t.Errorf("profile %q, want system-2-link", got)
	}

	// A newly failing unit is rolled back, as on any host.
	r = skiffInHost(t, l, "root", "loc1", "deploy", "--local", name, "--flake", flake("3", failingUnit), confirm)
	wantCode(t, r, 4)
	wantContains(t, "error", r.stderr, "skiff: error: "+name+": newly failed units demo-web.service after activation; rolled back to generation 2")
	noSSH(t, r)
	if got := running(t, l, "loc1"); got != good {
		t.Errorf("running %q after the rollback, want %q", got, good)
	}
	if got := profile(t, l, "loc1"); got != "system-2-link" {
		t.Errorf("profile %q after the rollback, want system-2-link", got)
	}

	// As the deploy user: privileged steps through sudo -n.
	r = skiffInHost(t, l, lab.DeployUser, "loc1", "deploy", "--local", name, "--flake", flake("4", ""), confirm)
	wantCode(t, r, 0)
	wantContains(t, "output", r.stderr, "connecting to deploy@localhost (this machine, no ssh)", "+ sudo -n -- ",
		"no ssh to lose: the lockout proof is skipped", "confirmed; system profile at generation 3")
	noSSH(t, r)
	if got := profile(t, l, "loc1"); got != "system-3-link" {
		t.Errorf("profile %q after the deploy user's deploy, want system-3-link", got)
	}

	// A sudo that wants the password gets it through the sudo wrapper,
	// and nothing shows it.
	for _, gen := range []string{"1", "2"} {
		r = skiffInHostInput(t, l, pw+"\n", lab.DeployUser, "locpw", "deploy", "--local", name, "--ask-sudo-password", "--flake", flake(gen, ""), confirm)
		wantCode(t, r, 0)
		wantContains(t, "output", r.stderr, "connecting to deploy@localhost (this machine, no ssh)", "nothing to copy", "skiff-sudo")
		noSSH(t, r)
		if strings.Contains(r.stdout+r.stderr, pw) {
			t.Errorf("the password shows in the output")
		}
	}
	wantContains(t, "output", r.stderr, "no ssh to lose: the lockout proof is skipped", "confirmed; system profile at generation 2")
	if got := profile(t, l, "locpw"); got != "system-2-link" {
		t.Errorf("profile %q on locpw, want system-2-link", got)
	}

	// A flake that defines this machine as a host of its own: deploying
	// another of its hosts here would make this machine that host, which
	// no lockout proof would catch. Refused before anything runs, unless
	// --force.
	if name == "loc1" {
		return // this machine's host name is no host of the flake here
	}
	two := readableFlake(t, host(name, "generation = 4;")+host("other1", "generation = 1;"))
	r = skiffInHost(t, l, "root", "loc1", "deploy", "--local", "other1", "--flake", two, confirm)
	wantCode(t, r, 2)
	wantContains(t, "errors", r.stderr, "this machine is "+name+", which the flake defines as a host of its own: deploy --local other1 would make it other1",
		`deploy other1 over ssh ("skiff deploy other1")`, "add --force")
	if strings.Contains(r.stderr, "switch-to-configuration") || strings.Contains(r.stderr, "nix-env") {
		t.Errorf("a refused local deploy ran something:\n%s", r.stderr)
	}
	r = skiffInHost(t, l, "root", "loc1", "deploy", "--local", "other1", "--force", "--flake", two, confirm)
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "other1", "deployed")
}

// A nix-darwin configuration deploys to this machine the same way:
// profile, activate-user and activate, without the proof over ssh.
func TestDeployLocalDarwin(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "mac9", Darwin: true})
	flake := func(gen string) string {
		dir := writeMixedFlake(t, "", mac("mac9", "generation = "+gen+";"))
		for _, d := range []string{dir, filepath.Dir(dir)} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	// This machine's host name is not in the flake: say how to name one.
	if hn, _ := os.Hostname(); !strings.HasPrefix(hn, "mac9") {
		r := skiffOn(t, l, "deploy", "--local", "--flake", flake("1"))
		wantCode(t, r, 2)
		wantContains(t, "error", r.stderr, "skiff: error: unknown host", `name the configuration: "skiff deploy --local NAME"`)
	}
	r := skiffInHost(t, l, "root", "mac9", "deploy", "--local", "mac9", "--flake", flake("1"))
	wantCode(t, r, 0)
	wantContains(t, "output", r.stderr, "connecting to root@localhost (this machine, no ssh)", "nothing to copy",
		"mac9: activate: nix-darwin activation: activate-user as root, then activate as root")
	noSSH(t, r)
	r = skiffInHost(t, l, lab.DeployUser, "mac9", "deploy", "--local", "mac9", "--flake", flake("2"))
	wantCode(t, r, 0)
	wantContains(t, "output", r.stderr, "connecting to deploy@localhost (this machine, no ssh)", "nothing to copy",
		"mac9: activate: no ssh to lose: the lockout proof is skipped")
	wantContains(t, "summary", r.stdout, "mac9", "deployed", "1 -> 2")
	noSSH(t, r)
	gen2 := execIn(t, l, "mac9", "readlink", "/run/current-system")
	if !strings.Contains(gen2, "darwin-system-mac9") || execIn(t, l, "mac9", "readlink", "/nix/var/nix/profiles/system") != "system-2-link" {
		t.Errorf("mac9 runs %q; profile %q", gen2, execIn(t, l, "mac9", "readlink", "/nix/var/nix/profiles/system"))
	}
}
