package remote

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseHealth(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      Health
	}{
		{"running", "state=running\n--- failed units\n[]\n", Health{State: "running", Failed: []Unit{}}},
		{"degraded", "state=degraded\n--- failed units\n" +
			`[{"unit":"demo-web.service","load":"loaded","active":"failed","sub":"failed","description":"Demo web","extra":1}]` + "\n",
			Health{State: "degraded", Failed: []Unit{{Unit: "demo-web.service", Load: "loaded", Active: "failed", Sub: "failed", Description: "Demo web"}}}},
		{"no systemd", "nosystemd\n", Health{}},
		{"old systemctl prints the table", "state=degraded\n--- failed units\n" +
			"  UNIT             LOAD   ACTIVE SUB    DESCRIPTION\n" +
			"● demo-web.service loaded failed failed Demo web\n\n" +
			"LOAD   = Reflects whether the unit definition was properly loaded.\n" +
			"ACTIVE = The high-level unit activation state, i.e. generalization of SUB.\n" +
			"SUB    = The low-level unit activation state, values depend on unit type.\n" +
			"1 loaded units listed.\n",
			Health{State: "degraded", Failed: []Unit{{Unit: "demo-web.service", Load: "loaded", Active: "failed", Sub: "failed", Description: "Demo web"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, parseHealth(tc.out)); d != "" {
				t.Error(d)
			}
		})
	}
}
