package flake

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiffdeploy/skiff/internal/keys"
)

// A keyFile given as a path value is turned into its string before
// builtins.toJSON, which would copy the file into the store.
func TestKeyFilePathValuesStayOutOfTheStore(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cr3t"), 0o600); err != nil {
		t.Fatal(err)
	}
	var got string
	nixEvalJSON(t, "let "+keyFilesExpr+" in builtins.toJSON (keyFilesAsStrings { tags = [ ]; keys = { a = { keyFile = "+secret+"; }; b = { text = \"x\"; }; }; })", nil, &got)
	want := `{"keys":{"a":{"keyFile":"` + secret + `"},"b":{"text":"x"}},"tags":[]}`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestKeyFilesInFlake(t *testing.T) {
	ref := Ref{URL: "/srv/infra", Dir: "/srv/infra"}
	store := "/nix/store/7zwfgkq0d3dkcqlxhhy4aja3f4dzvd4s-source"
	got := keyFilesInFlake(map[string]keys.Spec{
		"a": {KeyFile: store + "/secrets/tls.key"},
		"b": {KeyFile: "/etc/skiff/db.key"},
	}, ref)
	want := map[string]keys.Spec{
		"a": {KeyFile: "/srv/infra/secrets/tls.key"},
		"b": {KeyFile: "/etc/skiff/db.key"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}
