package nix

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// realNix runs the machine's nix-store or nix, for tests that hold skiff's
// output against theirs.
func realNix(t *testing.T, argv ...string) []byte {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, stderr.String())
	}
	return out
}

// exportFixture adds to the machine's store a tree with every kind of NAR
// node (empty, short and executable files, a symlink, nested and empty
// directories, names that sort bytewise) and a built path that refers to
// it and to itself, and returns the built path's closure as nix path-info
// gives it.
func exportFixture(t *testing.T) []PathInfo {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dir := filepath.Join(t.TempDir(), "skiff-export-tree")
	files := map[string]string{
		"empty":               "",
		"short":               "thirteen byte",
		"eight":               "8 bytes!",
		"sub/dir/deep":        "seventeen bytes.\n",
		"B-upper-sorts-first": "B",
		"x y":                 "a space",
		"\u00e4-utf8":         "non-ASCII name",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/dir/deep", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "hollow"), 0o755); err != nil {
		t.Fatal(err)
	}
	tree := strings.TrimSpace(string(realNix(t, "nix-store", "--add", dir)))
	expr := `derivation { name = "skiff-export-test"; system = builtins.currentSystem; builder = "/bin/sh"; PATH = "/usr/bin:/bin";
	  args = [ "-c" "mkdir $out && echo ${builtins.storePath "` + tree + `"} >$out/tree && echo $out >$out/self && printf x >$out/one" ]; }`
	var built []struct{ Outputs map[string]string }
	out := realNix(t, append([]string{"nix"}, append(Features, "--option", "substituters", "", "build", "--impure", "--no-link", "--json", "--expr", expr)...)...)
	if err := json.Unmarshal(out, &built); err != nil || len(built) != 1 {
		t.Fatalf("nix build: %v: %s", err, out)
	}
	infos, err := ParsePathInfo(realNix(t, append([]string{"nix"}, append(Features, "path-info", "-r", "--json", built[0].Outputs["out"])...)...))
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 {
		t.Fatalf("closure %v, want the built path and the tree", infos)
	}
	return infos
}

// Export writes what nix-store --export writes, byte for byte, and
// nix-store --import takes it.
func TestExportIsNixStoresExport(t *testing.T) {
	infos := exportFixture(t)
	var paths []string
	for _, i := range infos {
		paths = append(paths, i.Path)
	}
	want := realNix(t, append([]string{"nix-store", "--export"}, paths...)...)
	if !CanExport(infos) {
		t.Fatalf("CanExport(%v) = false", infos)
	}
	// The order of the list does not matter: the tree comes first.
	for _, order := range [][]PathInfo{infos, {infos[1], infos[0]}} {
		var got bytes.Buffer
		if err := Export(context.Background(), &got, order); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("Export wrote %d bytes that differ from nix-store --export's %d (first difference at %d)",
				got.Len(), len(want), firstDiff(got.Bytes(), want))
		}
	}
	// Each path alone, and nix-store --import reads what it wrote.
	for _, i := range infos {
		want := realNix(t, "nix-store", "--export", i.Path)
		var got bytes.Buffer
		if err := Export(context.Background(), &got, []PathInfo{i}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s: Export differs from nix-store --export at byte %d", i.Path, firstDiff(got.Bytes(), want))
		}
	}
	var stream bytes.Buffer
	if err := Export(context.Background(), &stream, infos); err != nil {
		t.Fatal(err)
	}
	imp := exec.Command("nix-store", "--import")
	imp.Stdin = &stream
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("nix-store --import: %v\n%s", err, out)
	}
}

// A path whose NAR no longer has its recorded hash is refused before its
// trailer, in either form of the hash; a hash of zeros is none.
func TestExportRefusesAChangedPath(t *testing.T) {
	infos := exportFixture(t)
	tree := infos[0]
	if strings.Contains(tree.Path, "skiff-export-test") {
		tree = infos[1]
	}
	b32 := strings.TrimSpace(string(realNix(t, "nix-store", "--query", "--hash", tree.Path))) // sha256:BASE32
	old := tree
	old.NarHash = b32
	if err := Export(context.Background(), &bytes.Buffer{}, []PathInfo{old}); err != nil {
		t.Errorf("the base-32 form of the right hash: %v", err)
	}
	zeros := tree
	zeros.NarHash = "sha256-" + strings.Repeat("A", 43) + "="
	if err := Export(context.Background(), &bytes.Buffer{}, []PathInfo{zeros}); err != nil {
		t.Errorf("a hash of zeros (none recorded) is not checked: %v", err)
	}
	for _, bad := range []string{
		"sha256-" + strings.Repeat("B", 43) + "=",
		"sha256:" + strings.Repeat("1", 52),
	} {
		changed := tree
		changed.NarHash = bad
		var out bytes.Buffer
		err := Export(context.Background(), &out, []PathInfo{changed})
		if err == nil || !strings.Contains(err.Error(), "the store is corrupted") {
			t.Errorf("NarHash %s: %v, want a corrupted store", bad, err)
		}
		if bytes.Contains(out.Bytes(), []byte(tree.Path)) {
			t.Errorf("NarHash %s: the stream holds the trailer naming %s", bad, tree.Path)
		}
	}
}

func TestDecodeNix32(t *testing.T) {
	// sha256 of the empty string, as Nix prints it in base 32.
	got, ok := decodeNix32("0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73")
	want := sha256.Sum256(nil)
	if !ok || !bytes.Equal(got, want[:]) {
		t.Errorf("decodeNix32 = %x, %v; want %x", got, ok, want)
	}
	for _, bad := range []string{"", "e" + strings.Repeat("0", 51), strings.Repeat("z", 52)} {
		if _, ok := decodeNix32(bad); ok {
			t.Errorf("decodeNix32(%q) accepted", bad)
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
