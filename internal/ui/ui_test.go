package ui

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/fleet"
)

var t0 = time.Date(2026, 11, 27, 7, 45, 1, 0, time.UTC)

func TestPlainLines(t *testing.T) {
	var b bytes.Buffer
	p := &Plain{W: &b}
	p.Event(fleet.Event{Time: t0, Phase: fleet.PhaseEval, Msg: "evaluating web1"})
	p.Event(fleet.Event{Time: t0, Host: "web1", Phase: fleet.PhaseCopy, Msg: "copying 2 path(s), 1.0 KiB"})
	p.Event(fleet.Event{Time: t0, Host: "web1", Phase: fleet.PhaseCopy, Progress: true, Msg: "512 B of 1.0 KiB"})
	p.Event(fleet.Event{Time: t0, Host: "web1", Phase: fleet.PhaseActivate, Output: true, Msg: "activating the configuration..."})
	want := "07:45:01 skiff: eval: evaluating web1\n07:45:01 web1: copy: copying 2 path(s), 1.0 KiB\n07:45:01 web1| activating the configuration...\n"
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Error(d)
	}
}

func TestSummaryTable(t *testing.T) {
	var b bytes.Buffer
	Summary(&b, []fleet.Result{
		{Host: "web1", Status: fleet.Deployed, OldGen: 3, NewGen: 4, CopiedPaths: 2, CopiedBytes: 2048, Duration: 1200 * time.Millisecond},
		{Host: "web2", Status: fleet.Failed, OldGen: 3, Duration: 300 * time.Millisecond, Err: fault.New("web2", fault.Refused, "h", "m")},
		{Host: "db1", Status: fleet.Skipped, Note: "not deployed: the canary failed"},
		{Host: "db2", Status: fleet.Deployed, Mode: fleet.Test, OldGen: 7, Duration: time.Second},
	})
	want := `HOST  RESULT    GENERATION           COPIED           DURATION  ERROR
web1  deployed  3 -> 4               2 paths, 2.0KiB  1.2s      
web2  failed    3                    -                300ms     refused
db1   skipped   -                    -                -         not deployed: the canary failed
db2   deployed  7 (test: none made)  -                1s        
`
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
}

func TestJSONStream(t *testing.T) {
	var b bytes.Buffer
	j := &JSON{W: &b}
	j.Event(fleet.Event{Time: t0, Host: "web1", Phase: fleet.PhaseCopy, Msg: "copying"})
	j.Event(fleet.Event{Time: t0, Host: "web1", Phase: fleet.PhaseCopy, Progress: true})
	j.Summary([]fleet.Result{{Host: "web1", Status: fleet.Failed, Duration: 1500 * time.Millisecond,
		Phases: map[fleet.Phase]time.Duration{fleet.PhaseCopy: time.Second},
		Err:    fault.Wrap(errors.New("x"), "web1", fault.Disk, "free space", "needs 1 GiB")}}, 3)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want an event and a summary:\n%s", len(lines), b.String())
	}
	var e EventJSON
	json.Unmarshal([]byte(lines[0]), &e)
	if d := cmp.Diff(EventJSON{Type: "phase", Time: "2026-11-27T07:45:01Z", Host: "web1", Phase: "copy", Message: "copying"}, e); d != "" {
		t.Error(d)
	}
	var s SummaryJSON
	json.Unmarshal([]byte(lines[1]), &s)
	h := s.Hosts[0]
	if s.Type != "summary" || s.ExitCode != 3 || h.Result != "failed" || h.ErrorClass != "disk" || h.Hint != "free space" ||
		h.DurationMS != 1500 || h.PhasesMS["copy"] != 1000 || !strings.Contains(h.Error, "needs 1 GiB") {
		t.Errorf("summary %+v", s)
	}
}

func TestSummaryOfAnInterruptedRun(t *testing.T) {
	var b bytes.Buffer
	Summary(&b, []fleet.Result{
		{Host: "web1", Status: fleet.Interrupted, OldGen: 3, Duration: 300 * time.Millisecond,
			Err: fault.New("web1", fault.Interrupted, "h", "interrupted during the copy; nothing was activated")},
		{Host: "web2", Status: fleet.Deployed, OldGen: 3, NewGen: 4, CopiedPaths: 2, CopiedBytes: 2048, Duration: 2 * time.Second,
			Note: "interrupted during activation, which was let finish"},
		{Host: "web3", Status: fleet.Interrupted, Err: fault.New("web3", fault.Interrupted, "h", "interrupted during the build")},
	})
	want := `HOST  RESULT       GENERATION  COPIED           DURATION  ERROR
web1  interrupted  3           -                300ms     interrupted
web2  deployed     3 -> 4      2 paths, 2.0KiB  2s        interrupted during activation, which was let finish
web3  interrupted  -           -                -         interrupted
`
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
}

func TestJSONSummaryOfAnInterruptedHost(t *testing.T) {
	var b bytes.Buffer
	j := &JSON{W: &b}
	j.Summary([]fleet.Result{{Host: "web1", Status: fleet.Interrupted, OldGen: 3,
		Err: fault.New("web1", fault.Interrupted, "deploy again", "interrupted during the copy; nothing was activated")}}, 130)
	var s SummaryJSON
	if err := json.Unmarshal(b.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	want := HostJSON{Host: "web1", Result: "interrupted", OldGeneration: 3, ErrorClass: "interrupted",
		Error: "web1: interrupted during the copy; nothing was activated", Hint: "deploy again"}
	if d := cmp.Diff(want, s.Hosts[0]); d != "" || s.ExitCode != 130 {
		t.Errorf("exit %d (-want +got)\n%s", s.ExitCode, d)
	}
}
