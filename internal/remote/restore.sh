# shellcheck shell=sh
# Host-side steps that undo a change of the system profile, shared by the
# plain activation (plain.sh) and the activation supervisor (package
# activate's supervisor.sh), which rolls back on the host with the
# deployer gone; sourced, not run on its own.
#
# skiff_genof LINK prints the generation number of a profile link
# (system-N-link, or a path ending in it); nothing for an empty LINK.
#
# skiff_restore PROFILE OLDGEN NEWGEN puts the profile back at generation
# OLDGEN and deletes generation NEWGEN, the one the change made (empty: the
# change made none, as when it switched to an existing generation). An
# OLDGEN of 0 or empty means there was no profile before: it is removed,
# with NEWGEN's link.
skiff_genof() {
	skiff_n=${1##*/}
	skiff_n=${skiff_n#system-}
	printf '%s\n' "${skiff_n%-link}"
}
skiff_restore() {
	if [ "${2:-0}" -gt 0 ]; then
		nix-env -p "$1" --switch-generation "$2" || return
		if [ -n "$3" ]; then nix-env -p "$1" --delete-generations "$3"; fi
	elif [ -n "$3" ]; then
		rm -f "$1" "$1-$3-link"
	fi
}
