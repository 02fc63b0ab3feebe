// Package cli is skiff's command line: one file per command, each built by
// a constructor that receives the shared options and whose RunE only calls
// a plain runX function. Only this package reads flags and the
// environment; root.go holds the exit-code table.
package cli
