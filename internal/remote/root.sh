# Functions that root a deploy's new system on the host, prepended to the
# store query's script (sourced, not run on its own).
#
# skiff_root ID PATH makes /run/skiff/roots/ID a symlink to the store path
# PATH and registers it as an indirect GC root the way Nix does: a symlink
# /nix/var/nix/gcroots/auto/NAME pointing at it, NAME being the base-32
# SHA-1 of the link's path. nix-store --gc skips a root whose store path is
# not valid yet and honours it (with its whole closure) once it is, and it
# removes the auto link itself once the /run link is gone (after
# skiff_unroot, or a reboot). The realise that follows registers PATH as a
# temporary root with a garbage collection already running (which read the
# roots before this one existed), so that a PATH reported valid stays
# valid; it substitutes nothing and fails harmlessly when PATH is missing.
# Roots older than a day were left by a deployer that was killed: they go.
skiff_roots=/run/skiff/roots
skiff_auto=/nix/var/nix/gcroots/auto
skiff_rootname() {
	printf %s "$skiff_roots/$1" | nix-hash --type sha1 --base32 --flat /dev/stdin
}
skiff_root() {
	(umask 077 && mkdir -p "$skiff_roots") && (umask 022 && mkdir -p "$skiff_auto") || return 1
	find "$skiff_roots" -type l -mmin +1440 -exec rm -f {} + 2>/dev/null
	n=$(skiff_rootname "$1") && [ -n "$n" ] || return 1
	rm -f "$skiff_roots/$1" "$skiff_auto/$n"
	ln -s "$2" "$skiff_roots/$1" && ln -s "$skiff_roots/$1" "$skiff_auto/$n" || return 1
	nix-store --realise --option substitute false "$2" >/dev/null 2>&1
	return 0
}
# skiff_unroot ID removes what skiff_root ID made.
skiff_unroot() {
	if n=$(skiff_rootname "$1") && [ -n "$n" ]; then rm -f "$skiff_auto/$n"; fi
	rm -f "$skiff_roots/$1"
}
