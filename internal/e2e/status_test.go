package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/history"
	"github.com/skiffdeploy/skiff/internal/lab"
)

const statusFailingUnit = `units = { "sshd.service" = { description = "OpenSSH Daemon"; stopIfChanged = false; }; ` +
	`"demo-web.service" = { description = "Demo web service"; fails = true; }; };`

// statusLine mirrors the fields of "skiff status --json" the tests check.
type statusLine struct {
	Host         string   `json:"host"`
	Reachable    bool     `json:"reachable"`
	CurrentPath  string   `json:"current_path"`
	ProfilePath  string   `json:"profile_path"`
	Generation   int      `json:"profile_generation"`
	FlakePath    string   `json:"flake_path"`
	MatchesFlake *bool    `json:"matches_flake"`
	SystemState  string   `json:"system_state"`
	FailedUnits  []string `json:"failed_units"`
	LastDeploy   *struct {
		Who        string `json:"who"`
		Path       string `json:"path"`
		Generation int    `json:"generation"`
		Time       string `json:"time"`
	} `json:"last_deploy"`
	ErrorClass string `json:"error_class"`
	Error      string `json:"error"`
	Hint       string `json:"hint"`
}

func parseStatus(t *testing.T, stdout string) map[string]statusLine {
	t.Helper()
	out := map[string]statusLine{}
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var s statusLine
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			t.Fatalf("status --json line %q: %v", l, err)
		}
		out[s.Host] = s
	}
	return out
}

func TestStatusReachabilityDriftHealthAndLastDeploy(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "st1"}, lab.HostSpec{Name: "st2"}, lab.HostSpec{Name: "st3"})
	hist := filepath.Join(t.TempDir(), "history.db")
	flake1 := writeFlake(t, host("st1", "generation = 1;")+host("st2", "generation = 1; "+statusFailingUnit)+host("st3", ""))
	r := skiffOn(t, l, "--history", hist, "deploy", "st1", "st2", "--flake", flake1)
	wantCode(t, r, 3) // st2's unit fails to start
	cur1 := strings.TrimSpace(statusMust(l.Host("st1").Exec(context.Background(), "readlink", "/run/current-system")))

	// What "skiff deploy" records (recordRun), written after the deploy
	// so that it is st1's latest deploy whether or not deploy records.
	db, err := history.Open(t.Context(), hist)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := db.Record(t.Context(), history.Run{Who: "tester@lab", Started: now, Finished: now, Command: "deploy", Flake: flake1,
		Mode: "switch", Hosts: []history.Host{{Name: "st1", Result: history.Deployed, NewPath: cur1, NewGen: 1}}}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	if err := l.Host("st3").StopSSHD(); err != nil {
		t.Fatal(err)
	}
	// The flake moves on: st1 has a new generation, st2 is unchanged.
	flake2 := writeFlake(t, host("st1", "generation = 2;")+host("st2", "generation = 1; "+statusFailingUnit)+host("st3", ""))

	r = skiffOn(t, l, "--history", hist, "status", "--json", "--flake", flake2)
	wantCode(t, r, 3)
	st := parseStatus(t, r.stdout)
	if len(st) != 3 {
		t.Fatalf("status --json has %d hosts, want 3:\n%s", len(st), r.stdout)
	}
	s1, s2, s3 := st["st1"], st["st2"], st["st3"]
	if !s1.Reachable || s1.CurrentPath != cur1 || s1.Generation != 1 || s1.MatchesFlake == nil || *s1.MatchesFlake ||
		s1.FlakePath == "" || s1.FlakePath == cur1 || s1.SystemState != "running" || s1.FailedUnits == nil || len(s1.FailedUnits) != 0 {
		t.Errorf("st1 (drifted, healthy): %+v", s1)
	}
	if s1.LastDeploy == nil || s1.LastDeploy.Who != "tester@lab" || s1.LastDeploy.Path != cur1 || s1.LastDeploy.Generation != 1 {
		t.Errorf("st1's last deploy: %+v", s1.LastDeploy)
	}
	if !s2.Reachable || s2.MatchesFlake == nil || !*s2.MatchesFlake || s2.SystemState != "degraded" ||
		strings.Join(s2.FailedUnits, ",") != "demo-web.service" {
		t.Errorf("st2 (current, a failed unit): %+v", s2)
	}
	if s3.Reachable || s3.ErrorClass != "refused" || s3.MatchesFlake != nil || s3.FailedUnits != nil || s3.Hint == "" {
		t.Errorf("st3 (sshd stopped): %+v", s3)
	}
	wantContains(t, "stderr", r.stderr, "skiff: error: st3: ", "skiff: hint: ")

	logins := l.Host("st1").Logins("root")
	r = skiffOn(t, l, "--history", hist, "status", "st1", "st2", "--flake", flake2)
	wantCode(t, r, 0)
	if got := l.Host("st1").Logins("root") - logins; got != 1 {
		t.Errorf("status made %d ssh logins to st1, want 1 (state and health over one connection)", got)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("status table has %d lines, want a header and 2 hosts:\n%s", len(lines), r.stdout)
	}
	wantContains(t, "header", lines[0], "HOST", "REACHABLE", "SYSTEM", "GENERATION", "FLAKE", "STATE", "FAILED", "LAST DEPLOY")
	wantContains(t, "st1 row", lines[1], "st1", "yes", "drift", "running", "gen 1, just now by tester@lab")
	wantContains(t, "st2 row", lines[2], "st2", "yes", "matches", "degraded", " 1 ")
	if r.stderr != "" {
		t.Errorf("status printed on stderr:\n%s", r.stderr)
	}

	// A boot deploy puts the flake's system in the profile only.
	r = skiffOn(t, l, "--history", hist, "deploy", "st1", "--mode", "boot", "--flake", flake2)
	wantCode(t, r, 0)
	r = skiffOn(t, l, "--history", hist, "status", "st1", "--flake", flake2)
	wantCode(t, r, 0)
	wantContains(t, "status after a boot deploy", r.stdout, "next boot", "profile 2")
}

// TestDeployRecordsHistory needs "skiff deploy" to call recordRun.
func TestDeployRecordsHistory(t *testing.T) {
	l := newLab(t, lab.HostSpec{Name: "hi1"}, lab.HostSpec{Name: "hi2"})
	hist := filepath.Join(t.TempDir(), "history.db")
	flake := writeFlake(t, host("hi1", "generation = 1;")+host("hi2", "generation = 1;"))
	if err := l.Host("hi2").StopSSHD(); err != nil {
		t.Fatal(err)
	}
	r := skiffOn(t, l, "--history", hist, "deploy", "--flake", flake)
	wantCode(t, r, 3)
	cur := strings.TrimSpace(statusMust(l.Host("hi1").Exec(context.Background(), "readlink", "/run/current-system")))

	r = skiffOn(t, l, "--history", hist, "history", "hi1", "--json")
	wantCode(t, r, 0)
	var row struct {
		Run           int64            `json:"run"`
		Who           string           `json:"who"`
		Command       string           `json:"command"`
		Flake         string           `json:"flake"`
		Mode          string           `json:"mode"`
		ExitCode      int              `json:"exit_code"`
		Host          string           `json:"host"`
		Result        string           `json:"result"`
		NewPath       string           `json:"new_path"`
		NewGeneration int              `json:"new_generation"`
		PhasesMS      map[string]int64 `json:"phases_ms"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &row); err != nil {
		t.Fatalf("history hi1 --json: %v\n%s", err, r.stdout)
	}
	if row.Host != "hi1" || row.Result != "deployed" || row.NewPath != cur || row.NewGeneration != 1 || row.Command != "deploy" ||
		row.Mode != "switch" || row.ExitCode != 3 || row.Flake != flake || !strings.Contains(row.Who, "@") {
		t.Errorf("hi1's history row: %+v", row)
	}
	if _, ok := row.PhasesMS["activate"]; !ok {
		t.Errorf("hi1's history row has no activate phase: %v", row.PhasesMS)
	}

	r = skiffOn(t, l, "--history", hist, "history")
	wantCode(t, r, 0)
	wantContains(t, "history", r.stdout, "hi1", "deployed", "- -> 1", "hi2", "failed", "refused")
}

func statusMust(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}
