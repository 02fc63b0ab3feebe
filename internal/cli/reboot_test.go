package cli

import (
	"errors"
	"testing"
	"time"

	"github.com/skiffdeploy/skiff/internal/fault"
	"github.com/skiffdeploy/skiff/internal/fleet"
	"github.com/skiffdeploy/skiff/internal/remote"
)

func TestRebootOptionsCheck(t *testing.T) {
	for _, tc := range []struct {
		o     rebootOptions
		mode  fleet.Mode
		usage bool
	}{
		{rebootOptions{reboot: true, timeout: time.Minute}, fleet.Switch, false},
		{rebootOptions{reboot: true, timeout: time.Minute}, fleet.Boot, false},
		{rebootOptions{reboot: true, timeout: time.Minute}, fleet.Test, true},
		{rebootOptions{reboot: true, timeout: time.Minute}, fleet.DryActivate, true},
		{rebootOptions{timeout: time.Minute}, fleet.Test, false},
		{rebootOptions{reboot: true}, fleet.Switch, true},
	} {
		err := tc.o.check(tc.mode)
		var ue usageError
		if got := errors.As(err, &ue); got != tc.usage {
			t.Errorf("%+v %s: %v, want usage error %v", tc.o, tc.mode, err, tc.usage)
		}
		if tc.o.reboot && tc.o.timeout > 0 && err != nil {
			if fe, ok := fault.As(err); !ok || fe.Class != fault.Usage || fe.Hint == "" {
				t.Errorf("%s: %v lacks a usage class and a hint", tc.mode, err)
			}
		}
	}
}

func TestRebootColumn(t *testing.T) {
	for _, tc := range []struct {
		b    *remote.Boot
		want string
	}{
		{nil, "-"},
		{&remote.Boot{}, "no"},
		{&remote.Boot{Differ: []string{"kernel", "initrd"}}, "needed (kernel, initrd)"},
	} {
		if got := rebootColumn(tc.b); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.b, got, tc.want)
		}
	}
}
