package fleet

import (
	"testing"

	"github.com/skiffdeploy/skiff/internal/remote"
)

// What the deployer's one rollback says it returned to, for each kind of
// change it undoes.
func TestRestoreNamesWhatItReturnsTo(t *testing.T) {
	const a, b = "/nix/store/a-system", "/nix/store/b-system"
	tests := []struct {
		name string
		b    restore
		want string
	}{
		{"switch", restore{st: remote.State{Current: a, Profile: a, Generation: 3}, newGen: 4, profile: true, activated: true}, "generation 3 (" + a + ")"},
		{"test mode on a host running another system than its profile", restore{st: remote.State{Current: b, Profile: a, Generation: 3}, activated: true}, "the previous system " + b},
		{"boot mode: the boot default", restore{st: remote.State{Current: b, Profile: a, Generation: 3}, newGen: 4, profile: true}, "generation 3 (" + a + ")"},
		{"nix-darwin", restore{st: remote.State{Current: a, Profile: a, Generation: 1}, newGen: 2, darwin: true}, "generation 1 (" + a + ")"},
		{"nix-darwin without a running system", restore{st: remote.State{Profile: a, Generation: 1}, newGen: 2, darwin: true}, "generation 1 (" + a + ")"},
		{"skiff rollback", restore{st: remote.State{Current: a, Profile: a, Generation: 5}, switched: true, profile: true, activated: true}, "generation 5 (" + a + ")"},
	}
	for _, tc := range tests {
		if got := tc.b.back(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
