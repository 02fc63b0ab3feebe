package remote

// UpToDate reports whether a deploy of the system out in mode ("switch",
// "boot" or "test") would leave the host as it is: switch needs the host
// to run out and its system profile (the boot default) to point at it,
// boot only the profile, test only the running system. After a deploy in
// mode test the host runs out but boots the old profile: up to date for
// test, not for switch. Deploy, diff and status all decide with this.
func (st State) UpToDate(mode, out string) bool {
	switch mode {
	case "switch":
		return st.Current == out && st.Profile == out
	case "boot":
		return st.Profile == out
	case "test":
		return st.Current == out
	}
	return false
}

// RunsNotBoots reports whether the host runs out without booting it by
// default: a switch would only set the system profile and the boot entry
// (the state a deploy in mode test leaves).
func (st State) RunsNotBoots(out string) bool {
	return st.Current == out && st.Profile != out
}
