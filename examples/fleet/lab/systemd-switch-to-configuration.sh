#!/bin/sh
# switch-to-configuration of skiff's systemd test systems (lib.nix mkSystemdSystem):
# NixOS's interface, exit codes and messages, changing the host's real systemd.
# The system's unit files (TOPLEVEL/etc/systemd-units/*) are linked into
# /run/systemd/system, its sshd settings (TOPLEVEL/etc/ssh/sshd_config.d/50-skiff-system.conf)
# are installed in /etc/ssh/sshd_config.d; then systemd is reloaded and what changed is
# stopped, restarted or started.
#
# Usage: switch-to-configuration TOPLEVEL ACTION
#   (TOPLEVEL/bin/switch-to-configuration ACTION calls it)
#
# Exit codes as NixOS: 0 ok; 1 usage, not root, boot loader failure; 2 activation
# failed (the running system is left unchanged); 4 units failed (the new system is
# active); 11 lock held; 100 incompatible init-interface-version.
# The boot loader entry is the symlink /nix/var/lab/boot-default, which the host's
# skiff-boot.service activates at boot.
set -u
set -f
PATH=/usr/bin:/bin:/usr/sbin:/sbin
export PATH
LC_ALL=C
export LC_ALL

out=$1
shift
action=${1-}
me=$out/bin/switch-to-configuration

usage() {
	cat >&2 <<USAGE
Usage: $me [switch|boot|test|dry-activate|check]

switch:       make the configuration the boot default and activate now
boot:         make the configuration the boot default
test:         activate the configuration, but don't make it the boot default
dry-activate: show what would be done if this configuration were activated
check:        run pre-switch checks and exit
USAGE
	exit 1
}

case $action in
switch | boot | test | dry-activate | check) ;;
*) usage ;;
esac

if [ "$(id -u)" != 0 ]; then
	echo "$me: this program must be run as root" >&2
	exit 1
fi
if [ ! -d /run/systemd/system ]; then
	echo "$me: systemd is not running here: this system is for skiff's systemd test hosts" >&2
	exit 1
fi

mkdir -p /run/nixos
exec 9>>/run/nixos/switch-to-configuration.lock
if ! flock -n 9; then
	echo "Could not acquire lock" >&2
	exit 11
fi

if [ "$action" = check ]; then
	exit 0
fi

if [ "$action" = switch ] || [ "$action" = boot ]; then
	mkdir -p /nix/var/lab &&
		ln -sfn "$out" "/nix/var/lab/.boot-default.$$" &&
		mv -T "/nix/var/lab/.boot-default.$$" /nix/var/lab/boot-default
	if [ $? -ne 0 ]; then
		echo "Failed to install bootloader" >&2
		exit 1
	fi
fi
if [ "$action" = boot ]; then
	exit 0
fi

cur=/run/current-system
if [ "$action" != dry-activate ] && [ -e "$cur/init-interface-version" ] &&
	[ "$(cat "$cur/init-interface-version")" != "$(cat "$out/init-interface-version")" ]; then
	cat >&2 <<WARN
Warning: the new NixOS configuration has an 'init' that is
incompatible with the current configuration.  The new configuration
won't take effect until you reboot the system.
WARN
	exit 100
fi

join() {
	j=
	for x in $1; do
		j=${j:+$j, }$x
	done
	printf '%s' "$j"
}

run=/run/systemd/system
new=$out/etc/systemd-units
sshdNew=$out/etc/ssh/sshd_config.d/50-skiff-system.conf
sshdCur=/etc/ssh/sshd_config.d/50-skiff-system.conf

# installed: the units a system of ours linked into /run/systemd/system.
set +f
installed=
for f in "$run"/*; do
	[ -L "$f" ] || continue
	case $(readlink "$f") in
	/nix/store/*) installed="$installed ${f##*/}" ;;
	esac
done
declared=
if [ -d "$new" ]; then
	for f in "$new"/*; do
		[ -f "$f" ] && declared="$declared ${f##*/}"
	done
fi
set -f

has() {
	case " $1 " in
	*" $2 "*) return 0 ;;
	esac
	return 1
}

to_stop=
to_restart=
to_start=
for u in $installed; do
	if ! has "$declared" "$u"; then
		systemctl is-active --quiet "$u" && to_stop="$to_stop $u"
	elif ! cmp -s "$run/$u" "$new/$u"; then
		if systemctl is-active --quiet "$u"; then
			to_restart="$to_restart $u"
		else
			to_start="$to_start $u"
		fi
	elif ! systemctl is-active --quiet "$u"; then
		to_start="$to_start $u"
	fi
done
for u in $declared; do
	has "$installed" "$u" || to_start="$to_start $u"
done
sshdChanged=0
if [ -f "$sshdNew" ]; then
	cmp -s "$sshdNew" "$sshdCur" || sshdChanged=1
elif [ -e "$sshdCur" ]; then
	sshdChanged=1
fi
if [ "$sshdChanged" = 1 ]; then
	to_restart="$to_restart ssh.service"
fi

if [ "$action" = dry-activate ]; then
	[ -z "$to_stop" ] || echo "would stop the following units: $(join "$to_stop")" >&2
	echo "would activate the configuration..." >&2
	"$out/dry-activate" "$out"
	[ -z "$to_restart" ] || echo "would restart the following units: $(join "$to_restart")" >&2
	[ -z "$to_start" ] || echo "would start the following units: $(join "$to_start")" >&2
	exit 0
fi

if [ -n "$to_stop" ]; then
	echo "stopping the following units: $(join "$to_stop")" >&2
	systemctl stop -- $to_stop
fi

echo "activating the configuration..." >&2
if ! "$out/activate" "$out"; then
	# The running system is unchanged: bring back what was stopped for it.
	[ -z "$to_stop" ] || systemctl start -- $to_stop
	exit 2
fi

# Install the new system's units and sshd settings.
for u in $installed; do
	has "$declared" "$u" || rm -f "$run/$u"
done
for u in $declared; do
	ln -sfn "$new/$u" "$run/.$u.$$" && mv -T "$run/.$u.$$" "$run/$u"
done
if [ -f "$sshdNew" ]; then
	cp "$sshdNew" "$sshdCur.$$" && mv -f "$sshdCur.$$" "$sshdCur"
else
	rm -f "$sshdCur"
fi
systemctl daemon-reload

if [ -n "$to_restart" ]; then
	echo "restarting the following units: $(join "$to_restart")" >&2
	for u in $to_restart; do
		systemctl restart "$u" >/dev/null 2>&1
	done
fi
started=
if [ -n "$to_start" ]; then
	echo "starting the following units: $(join "$to_start")" >&2
	for u in $to_start; do
		systemctl start "$u" >/dev/null 2>&1
		if ! has "$installed" "$u" && systemctl is-active --quiet "$u"; then
			started="$started $u"
		fi
	done
fi
[ -z "$started" ] || echo "the following new units were started: $(join "$started")" >&2

failed=$(systemctl list-units --failed --plain --no-legend --no-pager | while read -r u _; do printf '%s ' "$u"; done)
if [ -n "$failed" ]; then
	echo "warning: the following units failed: $(join "$failed")" >&2
	for u in $failed; do
		echo >&2
		COLUMNS=1000 systemctl status --no-pager --full "$u" >&2
	done
	exit 4
fi
exit 0
