#!/bin/sh
# skiff lab: turn a fresh mount namespace into one lab host, then become its sshd.
#
# The lab runs this script as
#   unshare --mount --propagation private /bin/sh setup.sh HOSTDIR NAME boot
# and, to bring a stopped listener back inside a still-running host,
#   nsenter --mount --target KEEPER_PID /bin/sh setup.sh HOSTDIR NAME sshd
#
# Every parameter is an argument; nothing is interpolated into a command string.
# HOSTDIR holds everything the host owns: nix/ (its /nix), etc/ (its passwd, group,
# shadow, sudoers, ssh/ and nix/), bin/ (the systemctl and journalctl stand-ins, seen
# as /run/lab-systemd/bin), home/ (its /home), and the logs sshd.log, boot.log and
# nix-daemon.log.
set -eu

hostdir=$1
name=$2
mode=$3

PATH=$hostdir/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022

start_sshd() {
	rm -f "$hostdir/sshd.pid"
	exec /usr/sbin/sshd -D -f /etc/ssh/sshd_config -E "$hostdir/sshd.log"
}

if [ "$mode" = sshd ]; then
	start_sshd
fi
if [ "$mode" != boot ]; then
	echo "setup.sh: unknown mode $mode" >&2
	exit 2
fi

# The host's own /nix and a private /run.
mount --bind "$hostdir/nix" /nix
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/sshd /run/lock /run/nixos /run/lab-systemd/units /run/lab-systemd/static

# The host's /etc files, /home and /root: the machine's own files are never
# modified, and root's caches (~/.cache/nix) are the host's own, as on a real host.
mount --bind "$hostdir/home" /home
mount --bind "$hostdir/root" /root
for f in passwd group shadow sudoers; do
	mount --bind "$hostdir/etc/$f" "/etc/$f"
done
mount --bind "$hostdir/etc/ssh" /etc/ssh
mount --bind "$hostdir/etc/nix" /etc/nix

# The systemd stand-in: state under /run/lab-systemd (see the systemctl script).
# The shims are bind-mounted to /run/lab-systemd/bin, so that users other than root
# reach them (and their home) even when the lab's directory is private (mode 0700).
sd=/run/lab-systemd
mkdir -p "$sd/bin"
mount --bind "$hostdir/bin" "$sd/bin"
printf '%s\n' "$name" >"$sd/hostname"
# A new boot id for every boot, also where programs read the kernel's
# (/proc/sys/kernel/random/boot_id, bind-mounted over in this namespace only).
uuid=$(cat /proc/sys/kernel/random/uuid)
printf '%s\n' "$uuid" >"$sd/proc-boot-id"
mount --bind "$sd/proc-boot-id" /proc/sys/kernel/random/boot_id
printf '%s\n' "$uuid" | tr -d '-' >"$sd/boot_id"
# Reboot requests go to the lab through HOSTDIR/ctl (see the reboot stand-in).
mkdir -p "$hostdir/ctl" "$sd/ctl"
rm -f "$hostdir/ctl/reboot"
mount --bind "$hostdir/ctl" "$sd/ctl"
: >"$sd/journal"
printf 'description=OpenSSH Daemon\n' >"$sd/static/sshd.service"
printf 'loaded active running OpenSSH Daemon\n' >"$sd/units/sshd.service"
printf '%s\t%s\t%s\t%s\t%s\n' "$(date +%s)" sshd.service "$name" 'systemd[1]' \
	'Started sshd.service - OpenSSH Daemon.' >>"$sd/journal"

# A process that keeps the namespace alive while sshd is stopped (Host.StopSSHD),
# and the host's own nix-daemon (for non-root users that are trusted-users).
# (Its redirections free the descriptors of the process that started it.)
# shellcheck disable=SC2217
sleep infinity </dev/null >/dev/null 2>&1 &
echo $! >"$hostdir/keeper.pid"
nix-daemon </dev/null >>"$hostdir/nix-daemon.log" 2>&1 &

# A "reboot": boot the boot default (recorded by switch-to-configuration boot or
# switch), else the system profile, like a boot loader would.
# HOSTDIR/ctl/boot-once (Host.BootOnce) picks another system for this boot only.
sys=
if [ -s "$sd/ctl/boot-once" ]; then
	sys=$(readlink -f "$(cat "$sd/ctl/boot-once")")
	rm -f "$sd/ctl/boot-once"
elif [ -e /nix/var/lab/boot-default ]; then
	sys=$(readlink -f /nix/var/lab/boot-default)
elif [ -e /nix/var/nix/profiles/system ]; then
	sys=$(readlink -f /nix/var/nix/profiles/system)
fi
if [ -n "$sys" ] && [ -x "$sys/activate" ]; then
	{
		echo "booting $sys"
		ln -sfn "$sys" /run/booted-system
		mkdir -p /nix/var/nix/gcroots
		ln -sfn /run/booted-system /nix/var/nix/gcroots/booted-system
		if "$sys/activate" "$sys"; then
			# systemd starts the units of the booted system.
			if [ -d "$sys/etc/lab/units" ]; then
				for f in "$sys/etc/lab/units"/*; do
					[ -e "$f" ] || continue
					systemctl start "${f##*/}" || true
				done
			fi
		else
			echo "boot: activation of $sys failed"
		fi
	} >>"$hostdir/boot.log" 2>&1 </dev/null
fi

start_sshd
