// Package nspawn runs test hosts with real systemd: Debian containers booted by
// systemd-nspawn, each with systemd as PID 1, journald, dbus, Debian's OpenSSH
// server on its own 127.0.0.1 port and Debian's Nix with a store of its own.
// Bookworm (the default: systemd 252, Nix 2.8) and Trixie (systemd 257, Nix
// 2.26) are the releases. skiff's end-to-end tests use them where the lab's
// systemctl and journalctl stand-ins cannot prove anything: transient
// systemd-run units, real failed units and their journals, sshd restarting
// under an activation; and to run skiff against another Nix release.
//
// Contract:
//   - Tree builds a release's shared root filesystem once, with debootstrap
//     (minbase plus systemd, systemd-sysv, dbus, openssh-server) and then apt-get
//     install nix-bin and sudo inside it, into CACHE/HASH where HASH covers the
//     whole recipe and the release; a tree whose recipe did not change is reused.
//     The tree holds no SSH host key. It has a user deploy (uid 1000) whose sudo
//     asks for no password.
//   - Start boots every host in parallel: systemd-nspawn --boot --register=no
//     --keep-unit over an overlayfs (the tree read-only below, HOSTDIR/upper above),
//     mounted in a private mount namespace of the nspawn process, so that nothing
//     stays mounted once it ends. Each host generates its own ed25519 host key at
//     its first boot; Start records it in DIR/known_hosts and returns once every
//     host accepts an SSH login as root with DIR/id_ed25519 (host key checking on);
//     the key is authorized for deploy too.
//     DIR/ssh_config (Host NAME, HostName 127.0.0.1, Port N) is for ssh -F and
//     skiff -F. HostSpec.NixSize gives a host a tmpfs /nix of that size.
//   - A host's upper layer survives Host.Stop and Host.Start (a reboot keeps /etc,
//     /root and /nix, loses /run). A reboot or poweroff inside a host ends its
//     nspawn process; Host.Exited reports it and Host.Start boots it again. At boot
//     the tree's skiff-boot.service activates the boot default the example flake's
//     systemd systems write (/nix/var/lab/boot-default), like NixOS boots its
//     default generation.
//   - Host.Exec runs a command inside a running host (nsenter, not SSH).
//   - Fleet.Stop ends every nspawn process and the containers under them; it is
//     idempotent.
//   - Available reports whether this machine can run these hosts (root, Linux,
//     systemd-nspawn, unshare, nsenter, overlayfs, ssh; debootstrap unless the
//     tree is cached).
//   - Trixie hosts get a cgroup v2 hierarchy only (systemd 256 and newer do not
//     boot on the v1 hierarchies of a hybrid machine).
//   - A Deployer runs commands as root in a chroot of a release's tree, not in a
//     container: each command in a private mount namespace, over a fresh
//     writable layer, with the Deployer's own /nix (never the machine's, never a
//     host's: a newer Nix upgrades the store's schema), /dev, /proc, and the
//     bound paths of the machine at the same paths (ssh_config, keys,
//     known_hosts, a flake, the binary to run). It is how a deployer runs
//     another release's nix, nix-store and ssh.
package nspawn
