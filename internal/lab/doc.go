// Package lab runs a test fleet on one Linux machine: each lab host is an sshd in its
// own mount namespace, with its own /nix (store and database), a private /run, and its
// own /etc/ssh, passwd, group, shadow, sudoers, /etc/nix, /home and /root (root's
// shell is /bin/sh) bind-mounted over the machine's. Nothing of the machine's own
// /etc, /nix or ~/.ssh is modified.
//
// Contract:
//   - Start creates or reuses DIR, picks a free 127.0.S.0/24 (host i listens on
//     127.0.S.(i+2):22), starts every host in parallel and returns once each accepts
//     SSH. DIR/ssh_config (one Host block per host, host key checking on against
//     DIR/known_hosts, identity DIR/id_ed25519) is what callers pass to ssh -F.
//     The client key is authorized for root and for the non-root user "deploy"
//     (shell /bin/sh, home /home/deploy = HOSTDIR/home/deploy; sudo without a password
//     unless HostSpec.SudoPassword is set).
//   - Inside a host, /run/current-system, /run/booted-system, /nix/var/nix/profiles
//     and the systemd stand-ins (systemctl and journalctl in HOSTDIR/bin, seen as
//     ShimDir, first in PATH for SSH sessions, sudo's secure_path and Exec) behave like
//     a NixOS host running systemd 252. The simulated systemd state lives in
//     /run/lab-systemd (see assets/systemctl). Each host runs its own nix-daemon, so
//     non-root users can use the host's store (trusted-users via ExtraNixConf).
//     A host builds without build users (build-users-group is empty): the machine's
//     nixbld accounts are shared by every store here, and Nix kills a build user's
//     processes before building with it.
//     The host's date is a stand-in too: writing a number of seconds to
//     ClockOffsetFile steps its wall clock (its monotonic clock never moves).
//     HostSpec.MaxStartups makes its sshd drop new connections early, like a busy one.
//   - Host.Stop ends the host (its /run is lost, its /nix stays); Host.Start boots it
//     again: the system that /nix/var/lab/boot-default points to (written by
//     switch-to-configuration boot|switch of the example flake), else the system
//     profile, is activated and its units are started before sshd accepts logins.
//     Host.StopSSHD and Host.StartSSHD stop and start only the listener, so new
//     connections are refused while /run and running sessions survive.
//   - A host reboots itself: its reboot stand-ins (systemctl reboot, reboot, shutdown -r;
//     root only) write HOSTDIR/ctl/reboot, and the process that started the lab
//     answers with Host.Stop and Host.Start (reboot.go). Every boot has a new boot id,
//     also at /proc/sys/kernel/random/boot_id (a file bind-mounted over the kernel's,
//     in the host's namespace only). Host.HoldReboots keeps a rebooted host down;
//     Host.BootOnce makes its next boot boot another system; Lab.RebootLog lists
//     the reboots served, in order.
//   - Stop ends every process of every host (by pid, and every process whose /nix is
//     the host's store, which covers nsenter'd commands and namespaces derived from
//     the host's, such as nix-daemon's), unmounts the size-limited stores, and is
//     idempotent. DIR/lab.json records pids, addresses and mounts so that Down (the
//     skiff-lab down command) can do the same from another process.
//   - Faults for diagnosis tests: HostSpec.NoSudo (deploy has no sudo rights),
//     Host.ChangeHostKey (a new host key; known_hosts keeps the old one) and
//     Host.DropSSH (iptables drops packets to the host's port 22 until undone;
//     DropAvailable says whether iptables works here).
//   - HostSpec.Darwin lays a host out like a nix-darwin machine: its shim dir holds a
//     uname that says Darwin (x86_64) and systemctl and journalctl that are "not
//     found" (exit 127), as on macOS. Its /nix, profiles and /run/current-system work
//     as on any lab host; examples/fleet/lib.nix mkDarwinSystem builds systems for it.
//   - Available reports whether this machine can run a lab (root, unshare, nsenter,
//     sshd, nix); tests skip with its reason, or fail when CI=true.
//
// The example flake in examples/fleet builds NixOS-shaped systems for these hosts.
package lab
