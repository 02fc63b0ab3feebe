// Package matrix runs skiff's end-to-end checks with Nix releases other
// than the machine's: TestNix226 deploys, switches under the supervisor,
// rolls back a lockout, diffs, collects garbage and runs doctor with Nix
// 2.26 (Debian 13) on the deployer side and on the hosts. The hosts are
// internal/lab/nspawn containers of the trixie tree; the deployer is this
// test binary re-executed in a chroot of the same tree with a /nix of its
// own (nspawn.Deployer), so that skiff finds Nix 2.26's nix, nix-store and
// ssh on its PATH. The tests skip when the machine cannot run them, and
// fail instead when CI is set.
package matrix
