package lab

import (
	"strings"
	"testing"
)

func TestSudoersRules(t *testing.T) {
	for _, tc := range []struct {
		spec HostSpec
		want string
	}{
		{HostSpec{Name: "a"}, "deploy ALL=(ALL:ALL) NOPASSWD: ALL\n"},
		{HostSpec{Name: "a", SudoPassword: "pw"}, "deploy ALL=(ALL:ALL) ALL\n"},
		{HostSpec{Name: "a", NoSudo: true}, ""},
	} {
		s := (&Host{Name: "a", Spec: tc.spec}).sudoers()
		if !strings.Contains(s, "root ALL=(ALL:ALL) ALL\n") {
			t.Errorf("%+v: no root rule:\n%s", tc.spec, s)
		}
		if got := strings.Contains(s, "\ndeploy "); got != (tc.want != "") || !strings.Contains(s, tc.want) {
			t.Errorf("%+v: sudoers\n%s\nwant deploy rule %q", tc.spec, s, tc.want)
		}
	}
}
