package remote

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseUnits(t *testing.T) {
	// systemd 252, one line; newer versions add keys.
	out := `[{"unit":"demo-web.service","load":"loaded","active":"failed","sub":"failed","description":"Demo web service"},{"unit":"x.mount","load":"loaded","active":"failed","sub":"failed","description":"X","extra":1}]` + "\n"
	got, err := ParseUnits([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []Unit{
		{Unit: "demo-web.service", Load: "loaded", Active: "failed", Sub: "failed", Description: "Demo web service"},
		{Unit: "x.mount", Load: "loaded", Active: "failed", Sub: "failed", Description: "X"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Error(d)
	}
	if got, err := ParseUnits([]byte("[]\n")); err != nil || len(got) != 0 {
		t.Errorf("empty: %v %v", got, err)
	}
	if _, err := ParseUnits([]byte("  UNIT LOAD ACTIVE SUB DESCRIPTION\n")); err == nil {
		t.Error("plain output accepted as JSON")
	}
}

func TestLockOwner(t *testing.T) {
	o := parseOwner("user=alice machine=laptop pid=4242 since=2026-11-27T07:45:00Z keeper=99 ")
	want := LockOwner{User: "alice", Machine: "laptop", PID: 4242, Since: "2026-11-27T07:45:00Z"}
	if d := cmp.Diff(want, o); d != "" {
		t.Error(d)
	}
	if s := o.String(); s != "alice@laptop (pid 4242, since 2026-11-27T07:45:00Z)" {
		t.Errorf("String() = %q", s)
	}
	if s := parseOwner("").String(); s != "?@? (pid ?)" {
		t.Errorf("empty owner: %q", s)
	}
	// A deploy waits for skiff gc and skiff upload-keys, not for another deploy.
	for op, brief := range map[string]bool{"": false, OpGC: true, OpUploadKeys: true} {
		if got := (LockOwner{Op: op}).Brief(); got != brief {
			t.Errorf("Brief() of op %q = %v, want %v", op, got, brief)
		}
	}
}

func TestLockLinesPassesOnlyWholeProtocolLines(t *testing.T) {
	ch := make(chan string, 4)
	w := &lockLines{ch: ch}
	w.Write([]byte("sudo noise\nskiff-lock: sta"))
	w.Write([]byte("le user=a\nskiff-lock: locked\nskiff-lock: partial"))
	close(ch)
	var got []string
	for l := range ch {
		got = append(got, l)
	}
	if d := cmp.Diff([]string{"stale user=a", "locked"}, got); d != "" {
		t.Error(d)
	}
}
