package cli

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/skiffdeploy/skiff/internal/fault"
)

func TestWithinTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A query that hangs until its context ends becomes a timeout
		// of the host after exactly the allowed time.
		start := time.Now()
		err := withinTimeout(context.Background(), 10*time.Second, "web1", "reading systemd's state", func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		})
		if fe, ok := fault.As(err); !ok || fe.Class != fault.Timeout || fe.Host != "web1" || fe.Hint == "" {
			t.Errorf("hanging query: %v, want a timeout fault of web1", err)
		}
		if got := time.Since(start); got != 10*time.Second {
			t.Errorf("gave up after %v, want 10s", got)
		}

		// A quick failure keeps its own error.
		boom := errors.New("boom")
		if err := withinTimeout(context.Background(), 10*time.Second, "web1", "x", func(context.Context) error { return boom }); err != boom {
			t.Errorf("quick failure: %v", err)
		}

		// An interrupt is not the host's timeout.
		ctx, cancel := context.WithCancel(context.Background())
		go func() { time.Sleep(time.Second); cancel() }()
		err = withinTimeout(ctx, 10*time.Second, "web1", "x", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
		if fault.ClassOf(err) != "" || !errors.Is(err, context.Canceled) {
			t.Errorf("interrupted query: %v, want context.Canceled", err)
		}
	})
}
