package remote

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseState(t *testing.T) {
	out := "current=/nix/store/aaa-nixos-system-web1\nbooted=\nlink=system-7-link\nprofile=/nix/store/aaa-nixos-system-web1\n"
	st, err := parseState(out)
	if err != nil {
		t.Fatal(err)
	}
	want := State{Current: "/nix/store/aaa-nixos-system-web1", Profile: "/nix/store/aaa-nixos-system-web1", Generation: 7}
	if d := cmp.Diff(want, st); d != "" {
		t.Error(d)
	}
	st, _ = parseState("current=\nbooted=\nlink=\nprofile=/nix/var/nix/profiles/system\n")
	if st.Generation != 0 || st.Profile != "" {
		t.Errorf("fresh host: %+v", st)
	}
	st, err = parseState("current=/nix/store/aaa\nlink=\nsystemd=1\n" +
		`units=[{"unit":"demo.service","load":"loaded","active":"failed","sub":"failed","description":"Demo"},{"unit":"ok.service","load":"loaded","active":"active","sub":"running","description":"OK"}]` + "\n")
	if err != nil || !st.Systemd || !st.Systemctl || !cmp.Equal(st.FailedUnits, []string{"demo.service"}) {
		t.Errorf("probe with systemd: %+v, %v", st, err)
	}
	if st, _ = parseState("current=\nunits=\n"); !st.Systemctl || st.FailedUnits != nil || st.Systemd {
		t.Errorf("no failed units: %+v", st)
	}
	if _, err := parseState("current=\nnix=missing\n"); err == nil {
		t.Error("missing nix not reported")
	}
}

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
