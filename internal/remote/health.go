package remote

// Health is what systemd on a host says about it (read by ReadState).
type Health struct {
	// State is "systemctl is-system-running": running, degraded,
	// starting, ...; "" when the host has no systemctl.
	State string
	// Failed are the units in the failed state.
	Failed []Unit
}
