package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/skiffdeploy/skiff/internal/command"
)

// Unit is one line of systemctl list-units --output=json (systemd 252);
// unknown keys are ignored.
type Unit struct {
	Unit        string `json:"unit"`
	Load        string `json:"load"`
	Active      string `json:"active"`
	Sub         string `json:"sub"`
	Description string `json:"description"`
}

// ErrNoSystemd is returned by FailedUnits on a host without systemctl.
var ErrNoSystemd = errors.New("systemctl is not available on the host")

// ParseUnits reads systemctl list-units --output=json. Empty output is no
// units.
func ParseUnits(out []byte) ([]Unit, error) {
	s := strings.TrimSpace(string(out))
	if s == "" {
		return nil, nil
	}
	var units []Unit
	if err := json.Unmarshal([]byte(s), &units); err != nil {
		return nil, fmt.Errorf("unexpected systemctl list-units output: %w", err)
	}
	return units, nil
}

// FailedUnits lists the names of the host's failed units.
func (h *Host) FailedUnits(ctx context.Context) ([]string, error) {
	res, err := h.run(ctx, "list failed units", transportExec(h.priv(failedUnitsArgv...)))
	return h.failedUnits(res, err)
}

var failedUnitsArgv = []string{"systemctl", "list-units", "--failed", "--all", "--output=json", "--no-pager"}

// StartFailedUnits sends FailedUnits like StartPriv, run by prefix (a
// command that runs its arguments) when given; the function returned
// waits for its answer.
func (h *Host) StartFailedUnits(ctx context.Context, prefix ...string) func(context.Context) ([]string, error) {
	p := h.StartPriv(ctx, "list failed units", append(slices.Clone(prefix), failedUnitsArgv...)...)
	return func(ctx context.Context) ([]string, error) {
		return h.failedUnits(p.Wait(ctx))
	}
}

// failedUnits reads the result of failedUnitsArgv.
func (h *Host) failedUnits(res command.Result, err error) ([]string, error) {
	if err != nil {
		var ce *command.Error
		if errors.As(err, &ce) && ce.ExitCode == 127 {
			return nil, ErrNoSystemd
		}
		return nil, err
	}
	units, err := ParseUnits(res.Stdout)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.Name, err)
	}
	return failedNames(units), nil
}

// failedNames are the names of the failed units among units.
func failedNames(units []Unit) []string {
	var names []string
	for _, u := range units {
		if u.Active == "failed" || u.Sub == "failed" {
			names = append(names, u.Unit)
		}
	}
	return names
}

var unitNameRE = regexp.MustCompile(`^[A-Za-z0-9:_.@\\-]+$`)

// Journal returns the last n lines the journal has for unit ("-- No
// entries --" when it has none).
func (h *Host) Journal(ctx context.Context, unit string, n int) (string, error) {
	if !unitNameRE.MatchString(unit) || strings.HasPrefix(unit, "-") {
		return "", fmt.Errorf("%s: invalid unit name %q", h.Name, unit)
	}
	res, err := h.run(ctx, "read the journal of "+unit, transportExec(h.priv("journalctl", "-u", unit, "-n", fmt.Sprint(n), "--no-pager")))
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(res.Stdout), "\n"), nil
}
