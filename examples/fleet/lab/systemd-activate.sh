#!/bin/sh
# Activation of skiff's systemd test systems (lib.nix mkSystemdSystem): NixOS's
# "activate" for those hosts. switch-to-configuration installs units and sshd
# settings; this sets up what the system needs before that.
#
# Usage: activate TOPLEVEL   (TOPLEVEL/activate calls it with its knobs set)
#   LAB_ACTIVATION_DELAY=N  sleep N seconds first (a slow activation)
#   LAB_ACTIVATION_FAILS=1  fail like a broken activation snippet, changing nothing
#
# On success it points /run/current-system at TOPLEVEL (atomically, last).
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

mkdir -p /nix/var/nix/gcroots
ln -sfn /run/current-system /nix/var/nix/gcroots/current-system

ln -s "$systemConfig" "/run/.current-system.$$"
mv -T "/run/.current-system.$$" /run/current-system
