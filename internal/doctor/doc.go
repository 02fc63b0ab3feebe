// Package doctor diagnoses why skiff cannot deploy a host, layer by layer:
// the effective ssh configuration (ssh -G), name resolution, TCP, the SSH
// banner, the host key, authentication, then on the host sudo, Nix, the
// store, free space, failed units, activation locks and the platform, and
// locally whether this machine can build the host's platform.
//
// Checks are small named functions run in order per host; a check whose
// prerequisite failed is skipped. Hosts run in parallel, each within a
// bounded time. Network findings are built with transport.Fault and
// transport.Classify, the same classification every other command uses.
// A host costs one ssh command: the verbose, unshared login of the
// host-key and auth checks runs remote.FactsCommand, whose output every
// on-host check reads.
package doctor
