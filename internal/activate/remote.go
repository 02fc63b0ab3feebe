package activate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/skiffdeploy/skiff/internal/command"
	"github.com/skiffdeploy/skiff/internal/remote"
)

// Remote is the Target of a host reached over SSH.
type Remote struct {
	Host *remote.Host
	// HTTP fetches URL checks; nil means http.DefaultClient.
	HTTP *http.Client

	lastState string // the state line Status saw last, to wait for a change
}

// StatusWait is how long one status read may wait on the host for news.
const StatusWait = 2 * time.Second

var _ Target = (*Remote)(nil)

// Systemd implements Target.
func (r *Remote) Systemd(ctx context.Context) (bool, error) {
	res, err := r.Host.RunPriv(ctx, "detect systemd", false, "sh", "-c", detectScript)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(res.Stdout)) == "systemd", nil
}

// Launch implements Target.
func (r *Remote) Launch(ctx context.Context, argv []string) error {
	_, err := r.Host.RunPriv(ctx, "start the activation supervisor", false, argv...)
	return err
}

// Status implements Target.
func (r *Remote) Status(ctx context.Context, p Plan, offset int) (State, error) {
	res, err := r.Host.RunPriv(ctx, "read the activation state", false, "sh", "-c", statusScript, "sh",
		p.StateDir(), strconv.Itoa(offset), r.lastState, strconv.Itoa(int(StatusWait/(100*time.Millisecond))))
	if err != nil {
		return State{}, err
	}
	if line, _, _ := strings.Cut(string(res.Stdout), "\n"); line != "" {
		r.lastState = line
	}
	return ParseState(res.Stdout), nil
}

// Decide implements Target.
func (r *Remote) Decide(ctx context.Context, p Plan, decision string, fresh bool) error {
	_, err := r.Host.RunPriv(ctx, "confirm the activation", fresh, "sh", "-c", decideScript, "sh", p.StateDir(), decision)
	var ce *command.Error
	if errors.As(err, &ce) && ce.ExitCode == 3 {
		return ErrTooLate
	}
	return err
}

// FailedUnits implements Target.
func (r *Remote) FailedUnits(ctx context.Context) ([]string, error) {
	return r.Host.FailedUnits(ctx)
}

// Journal implements Target.
func (r *Remote) Journal(ctx context.Context, unit string, n int) (string, error) {
	return r.Host.Journal(ctx, unit, n)
}

// Check implements Target: the command runs through sh -c on the host,
// privileged like the deploy.
func (r *Remote) Check(ctx context.Context, cmd string) error {
	_, err := r.Host.RunPriv(ctx, "health check", false, "sh", "-c", cmd)
	var ce *command.Error
	if errors.As(err, &ce) && ce.ExitCode > 0 && ce.ExitCode != 255 {
		msg := fmt.Sprintf("exit status %d", ce.ExitCode)
		if t := command.Tail(ce.Stderr, 1); t != "" {
			msg += ": " + t
		}
		return errors.New(msg)
	}
	return err
}

// Fetch implements Target.
func (r *Remote) Fetch(ctx context.Context, url string) error {
	c := r.HTTP
	if c == nil {
		c = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}
