package remote

import (
	"context"
	"strings"

	"github.com/skiffdeploy/skiff/internal/transport"
)

// Health is what systemd on a host says about it.
type Health struct {
	// State is "systemctl is-system-running": running, degraded,
	// starting, ...; "" when the host has no systemctl.
	State string
	// Failed are the units in the failed state.
	Failed []Unit
}

// healthScript prints "state=STATE", then a marker line, then the failed
// units as systemctl's JSON. It takes no arguments and needs no
// privileges.
const healthScript = `command -v systemctl >/dev/null 2>&1 || { echo nosystemd; exit 0; }
echo "state=$(systemctl is-system-running 2>/dev/null)"
echo "--- failed units"
systemctl list-units --failed --output=json --no-pager 2>/dev/null
exit 0`

// SystemHealth reads is-system-running and the failed units in one round
// trip over the host's shared connection.
func (h *Host) SystemHealth(ctx context.Context) (Health, error) {
	res, err := h.run(ctx, "read systemd state", transport.Exec{Argv: []string{"sh", "-c", healthScript}})
	if err != nil {
		return Health{}, err
	}
	return parseHealth(string(res.Stdout)), nil
}

func parseHealth(out string) Health {
	var hl Health
	head, units, ok := strings.Cut(out, "--- failed units\n")
	for _, l := range strings.Split(head, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "state="); ok {
			hl.State = v
		}
	}
	if ok {
		hl.Failed = parseFailed(units)
	}
	return hl
}

// parseFailed reads "systemctl list-units --failed" output: the JSON
// form (ParseUnits) or, from a systemctl too old for --output=json, the
// table, with or without the "●" marks, header and legend.
func parseFailed(out string) []Unit {
	if units, err := ParseUnits([]byte(out)); err == nil {
		if units == nil {
			units = []Unit{}
		}
		return units
	}
	units := []Unit{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(l), "●"))
		if len(f) < 4 || f[0] == "UNIT" || !strings.Contains(f[0], ".") || strings.HasSuffix(f[0], "=") {
			continue // header, legend, "N loaded units listed."
		}
		units = append(units, Unit{Unit: f[0], Load: f[1], Active: f[2], Sub: f[3], Description: strings.Join(f[4:], " ")})
	}
	return units
}
