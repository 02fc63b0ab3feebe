# shellcheck shell=sh
# skiff's plain activation: the system profile, then the activation, in
# one command, so that nothing activates when the profile could not be set;
# an activation that fails is undone here, at once, while the deployer's
# session still holds the deploy lock (its release waits behind this
# command). restore.sh's functions come first.
#
# Arguments: KIND PROFILE NEW ACTION GEN OLDGEN OLDPROFILE OLDCURRENT [INSTALL]
#   KIND        nixos (NEW/bin/switch-to-configuration ACTION) or darwin
#               (NEW/activate-user where it exists, then NEW/activate)
#   GEN         "new": a new generation for NEW (nix-env --set); a number:
#               switch the profile to that existing generation; empty:
#               leave the profile alone
#   OLDGEN      the profile's generation before (0: none)
#   OLDPROFILE  the system the profile pointed at before (may be empty)
#   OLDCURRENT  the system running before (may be empty)
#   INSTALL     1: (re)install the boot loader as switch-to-configuration
#               makes a boot default (NIXOS_INSTALL_BOOTLOADER=1, as
#               nixos-rebuild --install-bootloader)
#
# It reports on standard output, between the activation's own lines
# (standard error goes there too), lines starting with "skiff-activate: ":
#   error TEXT            a line of nix-env's error, before set-failed
#   set-failed RC         the profile could not be set; nothing ran
#   generation N          the profile's generation now
#   activated RC STEP     how the activation (its step STEP) ended
#   rollback              a failed activation is being undone
#   restored RC           the profile is back at OLDGEN (the new
#                         generation deleted)
#   reactivated WHAT RC   OLDPROFILE's boot default (boot), OLDCURRENT's
#                         activation (test; darwin: activate)
# It exits with the activation's code.
set -u
kind=$1 P=$2 new=$3 action=$4 gen=$5 oldgen=$6 oldprofile=$7 oldcurrent=$8
if [ "${9-}" = 1 ]; then export NIXOS_INSTALL_BOOTLOADER=1; fi
say() { printf 'skiff-activate: %s\n' "$*"; }

# setprofile ARGS...: nix-env -p PROFILE ARGS, its error lines reported.
setprofile() {
	err=$(nix-env -p "$P" "$@" 2>&1 >/dev/null)
	src=$?
	if [ "$src" -ne 0 ]; then
		printf '%s\n' "$err" | while IFS= read -r l; do say "error $l"; done
	fi
	return "$src"
}

# activate SYSTEM ACTION: activate SYSTEM; step is the step that ended.
activate() {
	if [ "$kind" = darwin ]; then
		step=activate-user
		if [ -x "$1/activate-user" ]; then
			"$1/activate-user" 2>&1 || return
		fi
		step=activate
		"$1/activate" 2>&1
		return
	fi
	step=switch-to-configuration
	"$1/bin/switch-to-configuration" "$2" 2>&1
}

made=
case $gen in
'') ;;
new)
	setprofile --set "$new" || {
		rc=$?
		say "set-failed $rc"
		exit "$rc"
	}
	made=$(skiff_genof "$(readlink "$P")")
	say "generation $made"
	;;
*)
	setprofile --switch-generation "$gen" || {
		rc=$?
		say "set-failed $rc"
		exit "$rc"
	}
	made=$gen
	say "generation $made"
	;;
esac

activate "$new" "$action"
rc=$?
say "activated $rc $step"
case $kind:$rc in
*:0 | nixos:4) exit "$rc" ;;
esac

say rollback
if [ -n "$made" ]; then
	del=
	if [ "$gen" = new ]; then del=$made; fi
	skiff_restore "$P" "$oldgen" "$del" 2>&1
	say "restored $?"
fi
if [ "$kind" = darwin ]; then
	old=${oldcurrent:-$oldprofile}
	if [ -n "$old" ]; then
		activate "$old" switch
		say "reactivated activate $?"
	fi
	exit "$rc"
fi
if [ -n "$made" ] && [ -n "$oldprofile" ]; then
	activate "$oldprofile" boot
	say "reactivated boot $?"
fi
case $action in switch | test)
	if [ -n "$oldcurrent" ]; then
		activate "$oldcurrent" test
		say "reactivated test $?"
	fi
	;;
esac
exit "$rc"
