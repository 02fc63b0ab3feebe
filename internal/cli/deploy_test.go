package cli

import (
	"os"
	"strings"
	"testing"

	"github.com/skiffdeploy/skiff/internal/fleet"
)

func TestExitCodeOfResults(t *testing.T) {
	for _, tc := range []struct {
		statuses []fleet.Status
		want     int
	}{
		{[]fleet.Status{fleet.Deployed, fleet.UpToDate}, ExitOK},
		{[]fleet.Status{fleet.Deployed, fleet.Interrupted}, ExitHostsFailed},
		{[]fleet.Status{fleet.Interrupted, fleet.RolledBack}, ExitRolledBack},
		{[]fleet.Status{fleet.Skipped}, ExitHostsFailed},
	} {
		var results []fleet.Result
		for _, s := range tc.statuses {
			results = append(results, fleet.Result{Status: s})
		}
		if got := exitCodeOf(results); got != tc.want {
			t.Errorf("exitCodeOf(%v) = %d, want %d", tc.statuses, got, tc.want)
		}
	}
}

// deploy --local refuses what would choose other hosts or another login,
// before anything runs (-x traces nothing).
func TestDeployLocalUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"web1", "web2"}, "--local takes at most one configuration name, got 2"},
		{[]string{"@web"}, `--local takes a configuration name, not "@web"`},
		{[]string{"web*"}, `--local takes a configuration name, not "web*"`},
		{[]string{"--on", "web1"}, "--local takes no --on"},
		{[]string{"web1", "--build-host", "bld1"}, "--local and --build-host do not go together"},
		{[]string{"--target-user", "deploy"}, "--local and --target-user do not go together"},
		{[]string{"--target-host", "root@10.0.0.5"}, "--local and --target-host do not go together"},
		{[]string{"web1", "--reboot"}, "--local and --reboot do not go together"},
	} {
		args := append([]string{"-x", "--flake", "/nonexistent", "deploy", "--local"}, tc.args...)
		code, stdout, stderr := run(args...)
		if code != ExitUsage || !strings.Contains(stderr, "skiff: error: "+tc.want) || !strings.Contains(stderr, "skiff: hint: ") {
			t.Errorf("%q: exit %d, stderr:\n%s", tc.args, code, stderr)
		}
		if strings.Contains(stderr, "+ ") || stdout != "" {
			t.Errorf("%q: something ran:\n%s%s", tc.args, stdout, stderr)
		}
	}
}

func TestDeployLocalDefaultsToTheHostName(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	want, _, _ := strings.Cut(host, ".")
	if got, err := localHost(nil, false, deployOptions{}); err != nil || got != want {
		t.Errorf("localHost() = %q, %v; want %q", got, err, want)
	}
	if got, err := localHost([]string{"web1"}, false, deployOptions{}); err != nil || got != "web1" {
		t.Errorf("localHost(web1) = %q, %v", got, err)
	}
}
