package remote

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCompare(t *testing.T) {
	out := `df /dev/sda1 1000 10 2048 1% /nix
@missing
/nix/store/bbbb-new
@closure
/nix/store/aaaa-nixos-system-web1-1
/nix/store/cccc-etc
@sizes
1000
200
`
	closure, store, err := parseCompare(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []StorePath{{"/nix/store/aaaa-nixos-system-web1-1", 1000}, {"/nix/store/cccc-etc", 200}}
	if diff := cmp.Diff(want, closure); diff != "" {
		t.Errorf("closure (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Store{Missing: []string{"/nix/store/bbbb-new"}, Free: 2048 * 1024}, store); diff != "" {
		t.Errorf("store (-want +got):\n%s", diff)
	}

	// No running system: no closure.
	closure, store, err = parseCompare("df /dev/sda1 1000 10 2048 1% /nix\n@missing\n")
	if err != nil || len(closure) != 0 || store.Free != 2048*1024 {
		t.Errorf("no running system: %v %v %v", closure, store, err)
	}
	if _, _, err := parseCompare("@missing\n@closure\n/nix/store/a\n@sizes\n"); err == nil {
		t.Error("a closure without sizes was accepted")
	}
}
