package e2e

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
)

// --on selects hosts on every command that names hosts, as the host
// arguments do.
func TestOnSelectsHostsOfStatusAndGenerations(t *testing.T) {
	dir := example(t)
	r := skiff(t, "status", "--on", "web*", "--json", "--flake", dir)
	wantCode(t, r, 0)
	var hosts []string
	for name, s := range parseStatus(t, r.stdout) {
		hosts = append(hosts, name)
		if !s.Reachable {
			t.Errorf("%s: %+v", name, s)
		}
	}
	sort.Strings(hosts)
	if strings.Join(hosts, ",") != "web1,web2" {
		t.Errorf("status --on 'web*' showed %v, want web1 and web2", hosts)
	}

	r = skiff(t, "status", "--on", "@db", "--flake", dir)
	wantCode(t, r, 0)
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "db1 ") {
		t.Errorf("status --on @db, want db1 only:\n%s", r.stdout)
	}

	// Hosts written as flake references, as nixos-rebuild and deploy-rs
	// take them.
	r = skiff(t, "status", dir+"#web1", "--on", "@db")
	wantCode(t, r, 0)
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[1], "db1 ") || !strings.HasPrefix(lines[2], "web1 ") {
		t.Errorf("status DIR#web1 --on @db, want db1 and web1:\n%s", r.stdout)
	}
	r = skiff(t, "status", "--flake", dir+"#web2", "--json")
	wantCode(t, r, 0)
	if got := parseStatus(t, r.stdout); len(got) != 1 || !got["web2"].Reachable {
		t.Errorf("status --flake DIR#web2: %+v", got)
	}

	r = skiff(t, "generations", "web2", "--on", "db1", "--json", "--flake", dir)
	wantCode(t, r, 0)
	var gens struct {
		Hosts []struct {
			Host string `json:"host"`
		} `json:"hosts"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &gens); err != nil || len(gens.Hosts) != 2 {
		t.Errorf("generations web2 --on db1: %v, %+v", err, gens)
	}
}
