#!/bin/sh
# Activation of a skiff lab system: the lab's stand-in for NixOS's "activate".
#
# Usage: activate TOPLEVEL   (TOPLEVEL/activate calls it with its knobs set)
#   LAB_ACTIVATION_DELAY=N  sleep N seconds first (a slow activation)
#   LAB_ACTIVATION_FAILS=1  fail like a broken activation snippet, changing nothing
#
# On success it installs the system's declared SSH keys into
# /etc/ssh/authorized_keys.d/USER (only for users the system declares keys for) and
# points /run/current-system at TOPLEVEL (atomically, last).
set -eu
PATH=/usr/bin:/bin
umask 022

systemConfig=$1
delay=${LAB_ACTIVATION_DELAY:-0}
fails=${LAB_ACTIVATION_FAILS:-0}

echo "setting up /etc..."

if [ "$delay" != 0 ]; then
	sleep "$delay"
fi

if [ "$fails" = 1 ]; then
	echo "lab: this system was built with activationFails = true" >&2
	echo "Activation script snippet 'lab' failed (1)"
	exit 1
fi

keys=$systemConfig/etc/ssh/authorized_keys.d
if [ -d "$keys" ]; then
	mkdir -p /etc/ssh/authorized_keys.d
	for f in "$keys"/*; do
		[ -f "$f" ] || continue
		user=${f##*/}
		tmp=/etc/ssh/authorized_keys.d/.$user.$$
		cp "$f" "$tmp"
		chmod 0444 "$tmp"
		mv -f "$tmp" "/etc/ssh/authorized_keys.d/$user"
	done
fi

mkdir -p /nix/var/nix/gcroots
ln -sfn /run/current-system /nix/var/nix/gcroots/current-system

ln -s "$systemConfig" "/run/.current-system.$$"
mv -T "/run/.current-system.$$" /run/current-system
