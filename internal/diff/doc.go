// Package diff tells what a deploy would change on a host before it
// changes anything: the difference between the closure the host runs and
// the one the flake builds now (packages added, removed and changed, named
// and versioned as builtins.parseDrvName does, and the size delta), the
// units switch-to-configuration dry-activate says it would stop, start,
// restart or reload, and a fleet summary grouping hosts whose changes are
// identical. Plan computes all of it for a prepared fleet.Session; it
// copies only the paths a host lacks and never changes what a host runs or
// boots.
package diff
