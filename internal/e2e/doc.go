// Package e2e holds skiff's end-to-end tests: they run skiff's command line
// in-process against a lab of real sshd hosts with their own Nix stores
// (internal/lab), building real closures with the real nix. They skip when
// the machine cannot run a lab, and fail instead when CI is set.
package e2e
