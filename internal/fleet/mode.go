package fleet

import "fmt"

// Mode is a switch-to-configuration action.
type Mode string

// The modes, with NixOS's meanings.
const (
	Switch      Mode = "switch"       // new generation, boot default, activate now
	Boot        Mode = "boot"         // new generation, boot default, activate at next boot
	Test        Mode = "test"         // activate now, no generation, boot default unchanged
	DryActivate Mode = "dry-activate" // print what would change, change nothing
)

// ParseMode reads --mode.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Switch, Boot, Test, DryActivate:
		return m, nil
	}
	return "", fmt.Errorf("unknown mode %q (want switch, boot, test or dry-activate)", s)
}

// MakesGeneration reports whether the mode sets the system profile.
func (m Mode) MakesGeneration() bool { return m == Switch || m == Boot }

// Activates reports whether the mode changes the running system.
func (m Mode) Activates() bool { return m == Switch || m == Test }
