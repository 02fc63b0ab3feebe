// Package flake evaluates a flake once for everything a run needs: the
// names of its hosts and, for the selected ones, their deployment settings,
// platform and toplevel derivation.
//
// Host settings live in each configuration, as colmena users know them:
// nixosConfigurations.NAME.config.deployment = { targetHost; targetPort;
// targetUser; tags; }. Every setting is optional; the ssh destination
// defaults to the attribute name, so ~/.ssh/config aliases work. A setting
// of the wrong type is a usage error naming the host and the setting; an
// evaluation error names the host and the flake attribute that failed.
package flake
