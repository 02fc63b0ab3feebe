// Package remote holds the typed operations skiff performs on a host:
// reading its running and booted systems, its system profile and
// generations, its health and boot state (one script, system.sh, read by
// one parser, for deploy's probe, status, generations, gc and rollback),
// finding
// the store paths it lacks (rooting the system being deployed first, see
// Root), setting the profile, and running
// switch-to-configuration. Privileged steps run through "sudo -n" when the
// login user is not root, or, with a sudo password, through sudo.sh, which
// gives the password to sudo alone (sudo.go). Every operation is one ssh
// command on the host's shared connection, or, while the host's Session is
// open (a deploy, a rollback, a gc), one request to the session's agent
// (session.sh), which also keeps the deploy lock: a deploy runs the
// session, whose first request is the probe (OpenProbe, ReadState's
// script), and, to prove access, one fresh command. The
// agent answers requests in order, so several can be sent before any
// reply is waited for, in one round trip: LockQuery (the lock, the state
// and the store query), and the Start* steps (Pending) whose replies are
// read later.
package remote
