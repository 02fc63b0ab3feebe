// Package nix builds the argv of local nix invocations and parses their
// output, tolerating the differences between Nix 2.8 and current releases
// (path-info as a list or as an object, derived-path syntax for builds).
package nix
