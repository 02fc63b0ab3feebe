package nix

import (
	"slices"
	"testing"
)

func TestCopyArgsOf(t *testing.T) {
	n := &Nix{}
	got := n.CopyArgsOf(Copy{From: "ssh://root@bld1", To: "ssh://root@web1", Substitute: true, Paths: []string{"/nix/store/x"}})
	want := append(append([]string{"nix"}, Features...), "copy", "--from", "ssh://root@bld1", "--to", "ssh://root@web1", "--substitute-on-destination", "/nix/store/x")
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	got = n.CopyArgsOf(Copy{To: "ssh://root@web1", Paths: []string{"/nix/store/x"}})
	if !slices.Equal(got, n.CopyArgs("ssh://root@web1", "/nix/store/x")) {
		t.Errorf("a plain copy differs from CopyArgs: %q", got)
	}
}

func TestRedactStoreURL(t *testing.T) {
	for in, want := range map[string]string{
		"file:///srv/cache?secret-key=/etc/nix/sec": "file:///srv/cache",
		"s3://bucket?region=eu-west-1":              "s3://bucket",
		"http://cache.lan":                          "http://cache.lan",
	} {
		if got := RedactStoreURL(in); got != want {
			t.Errorf("RedactStoreURL(%q) = %q, want %q", in, got, want)
		}
	}
}
