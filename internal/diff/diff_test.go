package diff

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/fault"
)

func TestParseName(t *testing.T) {
	for _, tc := range []struct{ in, name, version string }{
		{"openssl-3.0.13", "openssl", "3.0.13"},
		{"openssl-3.0.13-bin", "openssl", "3.0.13-bin"},
		{"nixos-system-web1-24.05.20240601.lab", "nixos-system-web1", "24.05.20240601.lab"},
		{"linux-lab-6.6.32", "linux-lab", "6.6.32"},
		{"etc", "etc", ""},
		{"etc-web1", "etc-web1", ""},
		{"lab-system-path", "lab-system-path", ""},
		{"python3.11-requests-2.31.0", "python3.11-requests", "2.31.0"},
		{"foo-_bar", "foo", "_bar"}, // Nix: any non-letter after '-' starts the version
		{"foo-", "foo-", ""},
		{"unit-demo-web.service", "unit-demo-web.service", ""},
	} {
		name, version := ParseName(tc.in)
		if name != tc.name || version != tc.version {
			t.Errorf("ParseName(%q) = %q, %q; want %q, %q", tc.in, name, version, tc.name, tc.version)
		}
	}
}

func TestStoreName(t *testing.T) {
	for in, want := range map[string]string{
		"/nix/store/kjhliyx7chbm0qd1ibdmcl7yz0g40vli-lab-nixos-tools": "lab-nixos-tools",
		"/nix/store/kjhliyx7chbm0qd1ibdmcl7yz0g40vli-openssl-3.0.13":  "openssl-3.0.13",
		"short-name": "short-name",
	} {
		if got := StoreName(in); got != want {
			t.Errorf("StoreName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0},
		{"3.0.13", "3.0.14", -1},
		{"3.0.9", "3.0.13", -1},
		{"2.3a", "2.3.1", -1},
		{"2.3", "2.3.1", -1},
		{"1.0pre", "1.0", -1},
		{"2.3pre1", "2.3", -1},
		{"1.10", "1.9", 1},
		{"24.11.20241201.lab", "24.05.20240601.lab", 1},
		{"001", "1", 0},
		{"a", "b", -1},
	} {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

const (
	h1 = "/nix/store/00000000000000000000000000000001-"
	h2 = "/nix/store/00000000000000000000000000000002-"
	h3 = "/nix/store/00000000000000000000000000000003-"
)

func TestCompareClosures(t *testing.T) {
	oldRoot := h1 + "nixos-system-web1-24.05.20240601.lab"
	newRoot := h2 + "nixos-system-web1-24.11.20241201.lab"
	old := []Path{
		{oldRoot, 100},
		{h1 + "etc-web1", 10},
		{h1 + "openssl-3.0.13", 1000},
		{h1 + "openssl-3.0.13-bin", 500},
		{h1 + "gone-0.1", 7},
		{h1 + "linux-lab-6.6.32", 50},
		{h1 + "same-1.0", 5},
		{h1 + "same-1.0", 5}, // listed twice: counted once
	}
	new := []Path{
		{newRoot, 100},
		{h2 + "etc-web1", 12}, // rebuilt, no version: not a change
		{h2 + "openssl-3.0.14", 1010},
		{h2 + "openssl-3.0.14-bin", 500},
		{h1 + "linux-lab-6.6.32", 50},
		{h1 + "same-1.0", 5},
		{h3 + "demo-tool-2.1", 40},
		{h3 + "python3-3.11.9", 30},
		{h3 + "python3-3.12.4", 30},
	}
	got := Compare(oldRoot, old, newRoot, new)
	want := Closure{
		System:  &Change{Name: "nixos", Old: "24.05.20240601.lab", New: "24.11.20241201.lab"},
		Added:   []Package{{"demo-tool", "2.1"}, {"python3", "3.11.9, 3.12.4"}},
		Removed: []Package{{"gone", "0.1"}},
		Changed: []Change{{Name: "openssl", Old: "3.0.13, 3.0.13-bin", New: "3.0.14, 3.0.14-bin"}},
		OldSize: 1672, NewSize: 1777, SizeDelta: 105,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Compare (-want +got):\n%s", diff)
	}
}

func TestCompareFirstDeployAndSameSystem(t *testing.T) {
	root := h2 + "nixos-system-h-1"
	got := Compare("", nil, root, []Path{{root, 10}, {h2 + "etc", 5}, {h2 + "bash-5.2", 20}})
	want := Closure{Added: []Package{{"bash", "5.2"}, {"etc", ""}}, NewSize: 35, SizeDelta: 35}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("first deploy (-want +got):\n%s", diff)
	}
	// Rebuilt with the same versions (say a changed unit file): nothing
	// named, only the size.
	other := h3 + "nixos-system-h-1"
	got = Compare(root, []Path{{root, 10}, {h2 + "etc", 5}}, other, []Path{{other, 10}, {h3 + "etc", 6}})
	if !got.Empty() || got.SizeDelta != 1 {
		t.Errorf("rebuilt system: %+v, want empty with size delta 1", got)
	}
}

func TestParseDryActivate(t *testing.T) {
	out := `would stop the following units: demo-web.service, old.service
would NOT stop the following changed units: dbus.service
would activate the configuration...
setting up /etc...
would restart systemd
would reload the following units: nginx.service
would restart the following units: demo-db.service
would start the following units: demo-web.service, new.timer
would restart the following user units: foo.service
`
	want := Units{
		Stop:    []string{"demo-web.service", "old.service"},
		Start:   []string{"demo-web.service", "new.timer"},
		Restart: []string{"demo-db.service"},
		Reload:  []string{"nginx.service"},
	}
	if diff := cmp.Diff(want, ParseDryActivate(out)); diff != "" {
		t.Errorf("ParseDryActivate (-want +got):\n%s", diff)
	}
	empty := ParseDryActivate("would activate the configuration...\n")
	if diff := cmp.Diff(Units{Stop: []string{}, Start: []string{}, Restart: []string{}, Reload: []string{}}, empty); diff != "" || !empty.Empty() {
		t.Errorf("nothing to do (-want +got):\n%s", diff)
	}
}

func TestActionsMergeStopAndStartIntoRestart(t *testing.T) {
	u := Units{Stop: []string{"a.service", "b.service"}, Start: []string{"a.service", "c.service"}, Restart: []string{"d.service"}, Reload: []string{"e.service"}}
	stops, starts, restarts, reloads := u.Actions()
	got := [][]string{stops, starts, restarts, reloads}
	want := [][]string{{"b.service"}, {"c.service"}, {"d.service", "a.service"}, {"e.service"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Actions (-want +got):\n%s", diff)
	}
}

func webPlan(host string, delta int64) HostPlan {
	return HostPlan{
		Host: host, Status: Changes, Activation: true,
		OldSystem: h1 + "nixos-system-" + host + "-1", NewSystem: h2 + "nixos-system-" + host + "-1",
		Closure: Closure{Changed: []Change{{Name: "demo-web", Old: "1", New: "2"}}, SizeDelta: delta},
		Units:   Units{Stop: []string{"demo-web.service"}, Start: []string{"demo-web.service"}},
	}
}

func testPlans() []HostPlan {
	many := HostPlan{Host: "big1", Status: Changes, Activation: true,
		Closure: Closure{SizeDelta: -2048, System: &Change{Name: "nixos", Old: "24.05", New: "24.11"}}}
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		many.Closure.Changed = append(many.Closure.Changed, Change{Name: n, Old: "1", New: "2"})
	}
	many.Closure.Added = []Package{{"g", "1"}}
	return []HostPlan{
		webPlan("web1", 1536),
		{Host: "db1", Status: UpToDate},
		webPlan("web2", 1536),
		{Host: "down1", Status: Failed, Err: fault.New("down1", fault.Refused, "start sshd", "connection to root@down1 refused")},
		{Host: "down2", Status: Failed, Err: fault.New("down2", fault.Refused, "start sshd", "connection to root@down2 refused")},
		webPlan("web3", 2048),
		{Host: "x1", Status: Changes, Activation: true, Closure: Closure{Added: []Package{{"tool", "1.0"}}, Removed: []Package{{"etc-old", ""}}},
			Units: Units{Reload: []string{"nginx.service"}, Stop: []string{"old.service"}, Start: []string{"new.service"}}},
		{Host: "x2", Status: Changes, Err: errors.New("plain failure"), Activation: false, Closure: Closure{}},
		many,
	}
}

func TestSummarizeGroupsIdenticalChanges(t *testing.T) {
	plans := testPlans()
	plans[7].Status = Changes
	plans[7].Err = nil
	got := Summarize(plans)
	want := []Group{
		{Hosts: []string{"web1", "web2", "web3"}, Line: "demo-web 1 → 2, restarts demo-web.service", Size: "+1.5 KiB to +2.0 KiB"},
		{Hosts: []string{"db1"}, Line: "up to date"},
		{Hosts: []string{"down1", "down2"}, Line: "failed (refused)"},
		{Hosts: []string{"x1"}, Line: "adds tool 1.0, removes etc-old, stops old.service, reloads nginx.service, starts new.service", Size: "±0 B"},
		{Hosts: []string{"x2"}, Line: "no version changes, activation not checked", Size: "±0 B"},
		{Hosts: []string{"big1"}, Line: "7 changed, 1 added, no unit changes", Size: "-2.0 KiB",
			More: []string{"nixos 24.05 → 24.11", "a 1 → 2", "b 1 → 2", "c 1 → 2", "d 1 → 2", "e 1 → 2", "f 1 → 2", "adds g 1"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Summarize (-want +got):\n%s", diff)
	}
}

func TestWriteText(t *testing.T) {
	var b bytes.Buffer
	WriteText(&b, []HostPlan{webPlan("web1", 10), webPlan("web2", 10), {Host: "db1", Status: UpToDate}})
	want := "web1, web2: demo-web 1 → 2, restarts demo-web.service; size +10 B\ndb1: up to date\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("WriteText (-want +got):\n%s", diff)
	}
}

func TestJSONFieldsAreStable(t *testing.T) {
	plans := []HostPlan{
		webPlan("web1", 10),
		{Host: "db1", Status: UpToDate, OldSystem: "/nix/store/x", NewSystem: "/nix/store/x"},
		{Host: "down1", Status: Failed, Err: fault.New("down1", fault.Refused, "start sshd", "connection refused")},
		{Host: "tst1", Status: Changes, OldSystem: "/nix/store/x", NewSystem: "/nix/store/x", SetsBootDefault: true, BootDefault: "/nix/store/o"},
	}
	var b bytes.Buffer
	if err := WriteJSON(&b, plans); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	hosts := got["hosts"].([]any)
	web := hosts[0].(map[string]any)
	want := map[string]any{
		"host": "web1", "status": "changes",
		"old_system": h1 + "nixos-system-web1-1", "new_system": h2 + "nixos-system-web1-1",
		"system": nil, "added": []any{}, "removed": []any{},
		"changed":        []any{map[string]any{"name": "demo-web", "old": "1", "new": "2"}},
		"old_size_bytes": 0.0, "new_size_bytes": 0.0, "size_delta_bytes": 10.0,
		"units":        map[string]any{"stop": []any{"demo-web.service"}, "start": []any{"demo-web.service"}, "restart": []any{}, "reload": []any{}},
		"copied_paths": 0.0, "copied_bytes": 0.0, "error": nil, "sets_boot_default": false,
	}
	if diff := cmp.Diff(want, web); diff != "" {
		t.Errorf("changed host (-want +got):\n%s", diff)
	}
	down := hosts[2].(map[string]any)
	wantErr := map[string]any{"class": "refused", "message": "down1: connection refused", "hint": "start sshd"}
	if diff := cmp.Diff(wantErr, down["error"]); diff != "" || down["units"] != nil || down["status"] != "failed" {
		t.Errorf("failed host: %v (-want +got):\n%s", down, diff)
	}
	wantGroups := []any{
		map[string]any{"hosts": []any{"web1"}, "summary": "demo-web 1 → 2, restarts demo-web.service; size +10 B"},
		map[string]any{"hosts": []any{"db1"}, "summary": "up to date"},
		map[string]any{"hosts": []any{"down1"}, "summary": "failed (refused)"},
		map[string]any{"hosts": []any{"tst1"}, "summary": "runs the new system but boots /nix/store/o by default: a deploy makes it the boot default (no package or unit changes)"},
	}
	if tst := hosts[3].(map[string]any); tst["sets_boot_default"] != true || tst["status"] != "changes" {
		t.Errorf("host after a deploy in mode test: %v", tst)
	}
	if diff := cmp.Diff(wantGroups, got["groups"]); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
}

func TestSignedBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "±0 B", 12: "+12 B", -12: "-12 B", 1536: "+1.5 KiB", -3 << 20: "-3.0 MiB"} {
		if got := SignedBytes(n); got != want {
			t.Errorf("SignedBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
