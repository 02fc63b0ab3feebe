// Package keys reads a host's secrets on the deploying machine and frames
// them for the host: deployment.keys.NAME, in colmena's schema (text,
// keyFile or keyCommand; destDir, name, user, group, permissions,
// uploadAt).
//
// A key's content never enters argv, the environment, an error message, a
// log line or JSON: Key keeps it in an unexported field, prints as its name
// and length only, and leaves this package only inside Frame's stream,
// which travels on the standard input of one ssh command per host
// (internal/remote: keys.sh). Names, directories, users, groups and
// permissions are checked here (Spec.Check, a usage error before any host
// is touched) and again by the host-side script.
package keys
