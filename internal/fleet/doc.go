// Package fleet deploys the selected hosts of a flake: one evaluation, one
// build, then each host's pipeline (connect, copy, activate) in parallel
// with a bound, each independent of the others. It reports progress as
// Events through a Reporter and returns one Result per host. Build does
// the evaluation and the build alone, opening no connection to any host.
package fleet
