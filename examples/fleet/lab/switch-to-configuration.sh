#!/bin/sh
# switch-to-configuration of skiff lab systems: NixOS's interface, exit codes and
# messages, with the lab's systemd stand-in (/run/lab-systemd) in place of systemd.
#
# Usage: switch-to-configuration TOPLEVEL ACTION
#   (TOPLEVEL/bin/switch-to-configuration ACTION calls it)
#
# Exit codes as NixOS: 0 ok; 1 usage, not root, boot loader failure; 2 activation
# failed (here the running system is left unchanged); 4 units failed (the new system
# is active); 11 lock held; 100 incompatible init-interface-version.
# The boot loader entry is the symlink /nix/var/lab/boot-default, which the lab boots
# when a host starts again; with NIXOS_INSTALL_BOOTLOADER=1, switch and boot also
# append the system to /nix/var/lab/bootloader-installs (the loader installed).
set -u
set -f
PATH=/usr/bin:/bin
export PATH
LC_ALL=C
export LC_ALL

out=$1
shift
action=${1-}
me=$out/bin/switch-to-configuration

usage() {
	cat >&2 <<EOF
Usage: $me [switch|boot|test|dry-activate|check]

switch:       make the configuration the boot default and activate now
boot:         make the configuration the boot default
test:         activate the configuration, but don't make it the boot default
dry-activate: show what would be done if this configuration were activated
check:        run pre-switch checks and exit
EOF
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

sd=/run/lab-systemd
systemctl=$sd/bin/systemctl
if [ ! -x "$systemctl" ]; then
	echo "$me: $sd is missing: this is not a skiff lab host" >&2
	exit 1
fi

mkdir -p /run/nixos
lock=/run/nixos/switch-to-configuration.lock
if [ -x /usr/bin/flock ]; then
	exec 9>>"$lock"
	if ! /usr/bin/flock -n 9; then
		echo "Could not acquire lock" >&2
		exit 11
	fi
else
	if ! mkdir "$lock.d" 2>/dev/null; then
		echo "Could not acquire lock" >&2
		exit 11
	fi
	trap 'rmdir "$lock.d"' EXIT
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
	# NixOS's boot loader scripts install the loader itself (not only its
	# entries) when asked to: the lab keeps a record of each time.
	if [ "${NIXOS_INSTALL_BOOTLOADER-}" = 1 ]; then
		echo "installing the boot loader..."
		echo "$out" >>/nix/var/lab/bootloader-installs
	fi
fi
if [ "$action" = boot ]; then
	exit 0
fi

cur=/run/current-system
if [ "$action" != dry-activate ] && [ -e "$cur/init-interface-version" ] &&
	[ "$(cat "$cur/init-interface-version")" != "$(cat "$out/init-interface-version")" ]; then
	cat >&2 <<EOF
Warning: the new NixOS configuration has an 'init' that is
incompatible with the current configuration.  The new configuration
won't take effect until you reboot the system.
EOF
	exit 100
fi

join() {
	j=
	for x in $1; do
		j=${j:+$j, }$x
	done
	printf '%s' "$j"
}

units_in() {
	if [ -d "$1" ]; then
		ls "$1"
	fi
}

# state UNIT: the unit's ACTIVE state, "inactive" when it has none.
state() {
	s=inactive
	if [ -f "$sd/units/$1" ]; then
		read -r _ s _ <"$sd/units/$1" || s=inactive
	fi
	printf '%s' "$s"
}

def_key() {
	while IFS= read -r l || [ -n "$l" ]; do
		case $l in
		"$2="*)
			printf '%s' "${l#"$2="}"
			return 0
			;;
		esac
	done <"$1"
}

old=$cur/etc/lab/units
new=$out/etc/lab/units

# Units active before the switch (everything loaded and not inactive, failed included).
prev=
for u in $(units_in "$sd/units"); do
	[ "$(state "$u")" = inactive ] || prev="$prev $u"
done

to_stop=
to_start=
to_restart=
quiet=
for u in $(units_in "$old"); do
	[ "$(state "$u")" = active ] || continue
	if [ ! -e "$new/$u" ]; then
		to_stop="$to_stop $u"
	elif ! cmp -s "$old/$u" "$new/$u"; then
		if [ "$(def_key "$new/$u" stopIfChanged)" = 0 ]; then
			to_restart="$to_restart $u"
		else
			to_stop="$to_stop $u"
			to_start="$to_start $u"
		fi
	fi
done
# Everything else the new system declares and is not running is started with the
# default target, silently.
for u in $(units_in "$new"); do
	case " $to_start $to_restart " in
	*" $u "*) continue ;;
	esac
	[ "$(state "$u")" = active ] || quiet="$quiet $u"
done

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
	for u in $to_stop; do
		"$systemctl" stop "$u" >/dev/null 2>&1
	done
fi

echo "activating the configuration..." >&2
if ! "$out/activate" "$out"; then
	# The running system is unchanged: bring back what was stopped for it.
	for u in $to_stop; do
		"$systemctl" start "$u" >/dev/null 2>&1
	done
	exit 2
fi
"$systemctl" daemon-reload

if [ -n "$to_restart" ]; then
	echo "restarting the following units: $(join "$to_restart")" >&2
	for u in $to_restart; do
		"$systemctl" restart "$u" >/dev/null 2>&1
	done
fi
if [ -n "$to_start" ]; then
	echo "starting the following units: $(join "$to_start")" >&2
	for u in $to_start; do
		"$systemctl" start "$u" >/dev/null 2>&1
	done
fi
for u in $quiet; do
	"$systemctl" start "$u" >/dev/null 2>&1
done

started=
failed=
for u in $(units_in "$sd/units"); do
	s=$(state "$u")
	if [ "$s" = failed ]; then
		failed="$failed $u"
	elif [ "$s" != inactive ]; then
		case " $prev " in
		*" $u "*) ;;
		*) started="$started $u" ;;
		esac
	fi
done

[ -z "$started" ] || echo "the following new units were started: $(join "$started")" >&2

if [ -n "$failed" ]; then
	echo "warning: the following units failed: $(join "$failed")" >&2
	echo >&2
	for u in $failed; do
		echo >&2
		COLUMNS=1000 "$systemctl" status --no-pager --full "$u" >&2
	done
	exit 4
fi
exit 0
