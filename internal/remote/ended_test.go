package remote

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/transport"
)

// A session or a lock keeper whose command ends before it answers (ssh
// failing to connect) ends at once: nothing waits for its input to be
// closed. Here the command is a local sh that fails at once.
func TestSessionAndKeeperEndWithTheirCommand(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "sh"), []byte("#!/bin/dash\nexit 255\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/bin/dash"); err != nil {
		t.Skip("no /bin/dash")
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	local, err := transport.LocalTarget()
	if err != nil {
		t.Fatal(err)
	}
	h := &Host{Name: "here", Conn: &transport.SSH{Target: local, Run: &command.Runner{}, Name: "here"}}
	for _, tc := range []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"session", func(ctx context.Context) error {
			s, err := h.OpenSession(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			_, err = s.exec(ctx, []string{"true"}, transport.Exec{})
			return err
		}},
		{"lock keeper", func(ctx context.Context) error {
			_, err := h.Lock(ctx, LockOwner{User: "u", Machine: "m", PID: 1}, false)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- tc.run(context.Background()) }()
			select {
			case err := <-done:
				if err == nil {
					t.Error("no error from a command that failed")
				}
			case <-ctx.Done():
				t.Fatal("still waiting for a command that has ended")
			}
		})
	}
}
