// Package remote holds the typed operations skiff performs on a host:
// reading its running and booted systems and its system profile, finding
// the store paths it lacks (rooting the system being deployed first, see
// Root), setting the profile, and running
// switch-to-configuration. Privileged steps run through "sudo -n" when the
// login user is not root, or, with a sudo password, through sudo.sh, which
// gives the password to sudo alone (sudo.go). Every operation is one ssh
// command on the host's shared connection.
package remote
