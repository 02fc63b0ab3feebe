// Package command runs external programs for skiff.
//
// Every program skiff starts, local or (through ssh) remote, goes through
// Runner, so that -x can print each one before it runs and so that a failure
// comes back as an *Error carrying the argv, the exit code and the tail of
// standard error for callers to classify with errors.As.
package command
