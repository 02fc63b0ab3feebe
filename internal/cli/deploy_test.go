package cli

import (
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
