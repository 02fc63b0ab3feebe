package remote

// PrivArgv is argv as a hint prints it for the user to run on the host by
// hand (after "ssh HOST"): with sudo first when the login is not root.
func (h *Host) PrivArgv(argv ...string) []string {
	if !h.Sudo() {
		return argv
	}
	return append([]string{"sudo"}, argv...)
}
