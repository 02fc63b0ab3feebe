// Package flake evaluates a flake once for everything a run needs: the
// names of its hosts and, for the selected ones, their deployment settings,
// platform and toplevel derivation. Hosts are the configurations of
// nixosConfigurations, darwinConfigurations and colmena's evaluated hive
// (colmenaHive.nodes, what colmena.lib.makeHive returns), so that a
// colmena flake deploys as it is.
//
// Host settings live in each configuration, as colmena users know them:
// nixosConfigurations.NAME.config.deployment = { targetHost; targetPort;
// targetUser; tags; }. Every setting is optional; the ssh destination
// defaults to the attribute name, so ~/.ssh/config aliases work; keys
// (colmena's deployment.keys) are decoded with colmena's defaults and
// checked here, their contents read later (package keys). A setting
// of the wrong type is a usage error naming the host and the setting; an
// evaluation error names the host and the flake attribute that failed.
//
// A deploy-rs flake's nodes (deploy.nodes.NAME, deployrs.go) give the
// configuration of the same name their settings, read in the same
// evaluation and winning over deployment.*; what skiff cannot do as
// deploy-rs would is refused here. A colmena node whose targetHost is
// null deploys only on itself (OverSSH leaves it out of remote work).
package flake
