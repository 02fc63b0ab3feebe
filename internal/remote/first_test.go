package remote

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// The first requests sent on a session travel in the agent's command, so
// that they cost no round trip of their own (sshd lets no input through
// before the command has started): all of them up to the first with
// secret input ("stdin", never an argument) or beyond a command of
// maxFirst bytes. A
// session closed before anything was sent ends at once. Here the agent
// runs on this machine (a local target runs the argv as it is), traced as
// -x traces it.
func TestSessionSendsItsFirstRequestsInItsCommand(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	t.Setenv("TMPDIR", t.TempDir())
	local, err := transport.LocalTarget()
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", maxFirst)
	tests := []struct {
		name    string
		argv    []string
		stdin   string
		want    string
		inFirst bool // the request travels in the command
	}{
		{"a command", []string{"echo", "first"}, "", "first\n", true},
		{"a command with lines in its arguments", []string{"printf", "%s\n", "a\nb"}, "", "a\nb\n", true},
		{"secret input", []string{"cat"}, "s3cret-key", "s3cret-key", false},
		{"long, within the command's bound", []string{"sh", "-c", "echo ${#1}", "sh", big[:maxFirst/2]}, "", fmt.Sprintf("%d\n", maxFirst/2), true},
		{"too long for an argument", []string{"sh", "-c", "echo ${#1}", "sh", big}, "", fmt.Sprintf("%d\n", maxFirst), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var trace bytes.Buffer
			h := &Host{Name: "here", Conn: &transport.SSH{Target: local, Run: &command.Runner{Trace: &trace}, Name: "here"}}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			s, err := h.OpenSession(ctx)
			if err != nil {
				t.Fatal(err)
			}
			e := transport.Exec{}
			if tc.stdin != "" {
				e.Stdin = strings.NewReader(tc.stdin)
			}
			res, err := s.exec(ctx, tc.argv, e)
			if err != nil || string(res.Stdout) != tc.want {
				t.Fatalf("got %q, %v; want %q", res.Stdout, err, tc.want)
			}
			// A second request goes to standard input, the agent alive.
			if res, err := s.exec(ctx, []string{"echo", "second"}, transport.Exec{}); err != nil || string(res.Stdout) != "second\n" {
				t.Fatalf("second request: %q, %v", res.Stdout, err)
			}
			s.Close()
			tr := trace.String()
			// What follows the agent's script in its command.
			cmd := tr[strings.LastIndex(tr, "' skiff-session")+len("' skiff-session"):]
			cmd, _, _ = strings.Cut(cmd, "\n+ ")
			if got := strings.Contains(cmd, "run "); got != tc.inFirst {
				t.Errorf("request in the agent's command: %v, want %v; the command's arguments:%s", got, tc.inFirst, cmd)
			}
			if tc.stdin != "" && (strings.Contains(tr, tc.stdin) || strings.Contains(tr, base64.StdEncoding.EncodeToString([]byte(tc.stdin)))) {
				t.Errorf("the secret input is in the trace:\n%s", tr)
			}
		})
	}
	t.Run("closed before any request", func(t *testing.T) {
		h := &Host{Name: "here", Conn: &transport.SSH{Target: local, Run: &command.Runner{}, Name: "here"}}
		s, err := h.OpenSession(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		s.Close()
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Close of a session never started took %s", d)
		}
		if _, err := s.exec(context.Background(), []string{"true"}, transport.Exec{}); err == nil {
			t.Error("a request on a closed session succeeded")
		}
	})
}
