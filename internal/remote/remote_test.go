package remote

import (
	"testing"

	"github.com/google/go-cmp/cmp"
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
