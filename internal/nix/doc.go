// Package nix builds the argv of local nix invocations and parses their
// output, tolerating the differences between Nix releases (2.8 to current,
// Lix, Determinate Nix): each one is named once, in versions.go
// (Differences), with the release where it changed and the function that
// handles it.
package nix
