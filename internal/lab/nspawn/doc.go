// Package nspawn runs test hosts with real systemd: Debian bookworm containers
// booted by systemd-nspawn, each with systemd 252 as PID 1, journald, dbus,
// Debian's OpenSSH server on its own 127.0.0.1 port and Nix 2.8 with a store of
// its own. skiff's end-to-end tests use them where the lab's systemctl and
// journalctl stand-ins cannot prove anything: transient systemd-run units, real
// failed units and their journals, sshd restarting under an activation.
//
// Contract:
//   - Tree builds the shared root filesystem once, with debootstrap (minbase plus
//     systemd, systemd-sysv, dbus, openssh-server) and then apt-get install nix-bin
//     inside it, into CACHE/HASH where HASH covers the whole recipe; a tree whose
//     recipe did not change is reused. The tree holds no SSH host key.
//   - Start boots every host in parallel: systemd-nspawn --boot --register=no
//     --keep-unit over an overlayfs (the tree read-only below, HOSTDIR/upper above),
//     mounted in a private mount namespace of the nspawn process, so that nothing
//     stays mounted once it ends. Each host generates its own ed25519 host key at
//     its first boot; Start records it in DIR/known_hosts and returns once every
//     host accepts an SSH login as root with DIR/id_ed25519 (host key checking on).
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
package nspawn
