package e2e

import (
	"strings"
	"testing"
)

// sshTrace counts, in a -x trace, the ssh commands that open a session on
// a host (not the control commands, "ssh -O"), the requests on the hosts'
// sessions, and the nix copy commands.
type sshTrace struct {
	sessions []string // "+ ssh ..." lines
	requests []string // "+ session HOST: ..." lines
	copies   int
}

func sshTraceOf(stderr string) sshTrace {
	var tr sshTrace
	for _, l := range strings.Split(stderr, "\n") {
		switch {
		case strings.HasPrefix(l, "+ ssh ") && !strings.Contains(l, " -O "):
			tr.sessions = append(tr.sessions, l)
		case strings.HasPrefix(l, "+ session "):
			tr.requests = append(tr.requests, l)
		case strings.HasPrefix(l, "+ NIX_SSHOPTS=") && strings.Contains(l, " copy "):
			tr.copies++
		}
	}
	return tr
}

func (tr sshTrace) String() string {
	short := func(l string) string {
		if len(l) > 160 {
			return l[:160] + "..."
		}
		return l
	}
	var b strings.Builder
	for _, l := range tr.sessions {
		b.WriteString(short(l) + "\n")
	}
	for _, l := range tr.requests {
		b.WriteString(short(l) + "\n")
	}
	return b.String()
}

// A supervised deploy of one host logs in with at most three ssh
// sessions (the probe, the host session, the fresh-connection
// confirmation) besides nix copy; a plain one with two.
func TestDeployOpensFewSSHSessions(t *testing.T) {
	// requests are the requests on the host's session: lock, state and
	// store query (those two at once), then the activation's steps, the
	// GC root's removal and the release.
	tests := []struct {
		name     string
		args     []string
		sessions int
		requests int
	}{
		{"first deploy (plain: nothing to roll back to)", nil, 2, 7},
		{"supervised switch", nil, 3, 8},
		{"plain switch", []string{"--magic-rollback=false"}, 2, 7},
		{"test mode", []string{"--mode", "test"}, 2, 6},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			flake := writeFlake(t, host("trips1", "generation = "+string(rune('1'+i))+";"))
			r := skiff(t, append([]string{"-x", "deploy", "trips1", "--flake", flake}, tc.args...)...)
			wantCode(t, r, 0)
			tr := sshTraceOf(r.stderr)
			t.Logf("%d ssh sessions, %d session requests, %d copies:\n%s", len(tr.sessions), len(tr.requests), tr.copies, tr)
			if len(tr.sessions) > tc.sessions {
				t.Errorf("%d ssh sessions, want at most %d:\n%s", len(tr.sessions), tc.sessions, tr)
			}
			if len(tr.requests) > tc.requests {
				t.Errorf("%d requests on the host's session, want at most %d:\n%s", len(tr.requests), tc.requests, tr)
			}
			if tr.copies != 1 {
				t.Errorf("%d nix copy commands, want 1", tr.copies)
			}
		})
	}
}
