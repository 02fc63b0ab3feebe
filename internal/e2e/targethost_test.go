package e2e

import (
	"strings"
	"testing"

	"github.com/skiffdeploy/skiff/internal/lab"
)

// --target-host, as nixos-rebuild takes it: the one selected host is
// reached at [USER@]HOST whatever its deployment.targetHost says, by
// deploy and by status alike; more than one host, or a hostile value, is
// refused before any host is touched. nixos-rebuild's whole command line
// (--flake .#HOST --target-host --build-host localhost --use-remote-sudo)
// works as typed.
func TestTargetHostReachesTheOneHost(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "th1"}, lab.HostSpec{Name: "th2"})
	dir := writeFlake(t, host("th1", `generation = 1; deployment.targetHost = "nowhere.invalid";`)+host("th2", "generation = 1;"))
	r := skiffOn(t, l, "-x", "deploy", dir+"#th1", "--target-host", "root@th1")
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "th1", "deployed")
	if strings.Contains(r.stderr, "nowhere.invalid") {
		t.Errorf("the flake's targetHost was used:\n%s", r.stderr)
	}
	r = skiffOn(t, l, "status", "th1", "--target-host", "th1", "--json", "--flake", dir)
	wantCode(t, r, 0)
	if got := parseStatus(t, r.stdout); !got["th1"].Reachable {
		t.Errorf("status --target-host: %+v", got)
	}

	// nixos-rebuild's command line, with skiff's name in front: the
	// flake's fragment selects the host, --build-host localhost builds
	// here (no ssh to localhost), --use-remote-sudo changes nothing.
	rewriteFlake(t, dir, host("th1", `generation = 2; deployment.targetHost = "nowhere.invalid";`)+host("th2", "generation = 1;"))
	r = skiffOn(t, l, "-x", "deploy", "--flake", dir+"#th1", "--target-host", "root@th1", "--build-host", "localhost", "--use-remote-sudo")
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stdout, "th1", "deployed")
	for _, line := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(line, "+ ssh ") && strings.Contains(line, "localhost") {
			t.Errorf("--build-host localhost went over ssh: %s", line)
		}
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"deploy", "th*", "--target-host", "th1"}, "--target-host is one host's address, and 2 hosts are selected: th1, th2"},
		{[]string{"deploy", "th1", "--target-host", "-oProxyCommand=id"}, `invalid --target-host "-oProxyCommand=id"`},
	} {
		r := skiffOn(t, l, append(append([]string{"-x"}, tc.args...), "--flake", dir)...)
		wantCode(t, r, 2)
		wantContains(t, "errors", r.stderr, tc.want)
		for _, line := range strings.Split(r.stderr, "\n") {
			if strings.HasPrefix(line, "+ ssh ") && strings.Contains(line, " -- ") || strings.HasPrefix(line, "+ session") {
				t.Errorf("%q ran a command on a host: %s", tc.args, line)
			}
		}
	}
}
