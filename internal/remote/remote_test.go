package remote

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/skiffdeploy/skiff/internal/transport"
)

func TestParseStore(t *testing.T) {
	out := "df /dev/vda 263174212 12543484 83820504 14% /\n/nix/store/aaa-x\n/nix/store/bbb-y\n"
	got := parseStore(out)
	want := Store{Missing: []string{"/nix/store/aaa-x", "/nix/store/bbb-y"}, Free: 83820504 * 1024}
	if d := cmp.Diff(want, got); d != "" {
		t.Error(d)
	}
	if got := parseStore("df \n"); got.Free != -1 {
		t.Errorf("unknown free space = %d", got.Free)
	}
}

func TestParseFailedUnits(t *testing.T) {
	out := "activating the configuration...\nwarning: the following units failed: demo-web.service, db.service\n\n× demo-web.service - Demo\n"
	if d := cmp.Diff([]string{"demo-web.service", "db.service"}, ParseFailedUnits(out)); d != "" {
		t.Error(d)
	}
	if got := ParseFailedUnits("all good\n"); got != nil {
		t.Errorf("got %v", got)
	}
}

func TestParseDf(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       Disk
	}{
		{"tmpfs", "tmpfs                65536 65000       536      100% /nix", Disk{Device: "tmpfs", Mount: "/nix", Size: 65536 * 1024, Free: 536 * 1024}},
		{"mount point with a space", "/dev/vda 1000 400 600 40% /mnt/my disk", Disk{Device: "/dev/vda", Mount: "/mnt/my disk", Size: 1000 * 1024, Free: 600 * 1024}},
		{"df failed", "df: /nix/store: No such file or directory", Disk{Size: -1, Free: -1}},
		{"nothing", "", Disk{Size: -1, Free: -1}},
	} {
		if d := cmp.Diff(tc.want, parseDf(tc.line)); d != "" {
			t.Errorf("%s: %s", tc.name, d)
		}
	}
	// The same line means the same free space to every reader.
	line := "/dev/vda 263174212 12543484 83820504 14% /"
	if a, b, c := parseStore("df "+line).Free, parseFacts("df\t/nix/store\t" + line).Disks[0].Free, parseFreed("after "+line).Free; a != b || b != c || a != 83820504*1024 {
		t.Errorf("store query %d, doctor %d, gc %d", a, b, c)
	}
}

func TestGCCommand(t *testing.T) {
	g := GCCommand{Flake: "/srv/my infra", SSH: transport.Options{ConfigFile: "/lab/ssh_config", Extra: []string{"Port=2222"}}, User: "deploy", Keep: 5}
	want := "skiff gc web1 --keep 5 --flake '/srv/my infra' -F /lab/ssh_config -o Port=2222 --target-user deploy"
	if got := g.For("web1"); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if h := g.DiskHint("web1"); !strings.Contains(h, `"`+want+`"`) {
		t.Errorf("hint %q", h)
	}
}
