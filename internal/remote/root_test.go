package remote

import (
	"crypto/sha1"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// nix32 is Nix's base-32 encoding of a hash.
func nix32(h []byte) string {
	const chars = "0123456789abcdfghijklmnpqrsvwxyz"
	n := (len(h)*8-1)/5 + 1
	var b strings.Builder
	for i := n - 1; i >= 0; i-- {
		bit := i * 5
		j, k := bit/8, bit%8
		c := int(h[j]) >> k
		if j+1 < len(h) {
			c |= int(h[j+1]) << (8 - k)
		}
		b.WriteByte(chars[c&0x1f])
	}
	return b.String()
}

// The host-side scripts that root a deploy's system pass shellcheck.
func TestRootScriptsPassShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Skip("no shellcheck")
	}
	for name, script := range map[string]string{
		"query":   rooted(missingScript),
		"compare": rooted(closureScript),
		"unroot":  rootFuncs + `skiff_unroot "$1"`,
		"lock":    lockScript,
	} {
		cmd := exec.Command("shellcheck", "-S", "warning", "-s", "sh", "-")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
}

// skiff_root makes the link and the auto root Nix would make for it
// (same name), with a store path that is not valid yet; skiff_unroot
// removes both. Run under dash with the machine's nix-hash.
func TestRootAndUnrootUnderDash(t *testing.T) {
	for _, tool := range []string{"dash", "nix-hash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip("no " + tool)
		}
	}
	dir := t.TempDir()
	roots, auto := filepath.Join(dir, "roots"), filepath.Join(dir, "auto")
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// nix-store must not touch the machine's store here.
	if err := os.WriteFile(filepath.Join(bin, "nix-store"), []byte("#!/bin/sh\necho \"$@\" >>"+filepath.Join(dir, "nix-store.log")+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const path = "/nix/store/00000000000000000000000000000000-nixos-system-x"
	run := func(script string, args ...string) {
		t.Helper()
		full := rootFuncs + "skiff_roots=" + roots + " skiff_auto=" + auto + "\n" + script
		cmd := exec.Command("dash", append([]string{"-c", full, "sh"}, args...)...)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	run(`skiff_root "$1" "$2"`, "20261202T010203-abcd", path)
	link := filepath.Join(roots, "20261202T010203-abcd")
	if got, err := os.Readlink(link); err != nil || got != path {
		t.Fatalf("root link: %q, %v", got, err)
	}
	sum := sha1.Sum([]byte(link))
	name := filepath.Join(auto, nix32(sum[:]))
	if got, err := os.Readlink(name); err != nil || got != link {
		t.Fatalf("auto root %s: %q, %v", name, got, err)
	}
	if log, _ := os.ReadFile(filepath.Join(dir, "nix-store.log")); !strings.Contains(string(log), "--realise --option substitute false "+path) {
		t.Errorf("no temporary root asked for: %q", log)
	}
	run(`skiff_unroot "$1"`, "20261202T010203-abcd")
	for _, p := range []string{link, name} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
}

func TestRootArgs(t *testing.T) {
	for _, tc := range []struct {
		root Root
		ok   bool
	}{
		{Root{}, true},
		{Root{ID: "20261202T010203-abcd", Path: "/nix/store/x"}, true},
		{Root{ID: "../lock", Path: "/nix/store/x"}, false},
		{Root{ID: "a b", Path: "/nix/store/x"}, false},
		{Root{ID: "a", Path: "relative"}, false},
	} {
		if _, err := tc.root.args(); (err == nil) != tc.ok {
			t.Errorf("%+v: err %v", tc.root, err)
		}
	}
}
