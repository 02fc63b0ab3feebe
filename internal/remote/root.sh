# Functions that root a deploy's new system on the host and read its
# store's free space, prepended to the store query's scripts (sourced, not
# run on their own).
#
# skiff_root ID PATH NAME makes /run/skiff/roots/ID a symlink to the store
# path PATH and registers it as an indirect GC root the way Nix does: a
# symlink /nix/var/nix/gcroots/auto/NAME pointing at it, NAME being the
# base-32 SHA-1 of the link's path (computed by the deployer: no nix-hash
# here). nix-store --gc skips a root whose store path is not valid yet and
# honours it (with its whole closure) once it is, and it removes the auto
# link itself once the /run link is gone (after skiff_unroot, or a
# reboot). Roots older than a day were left by a deployer that was
# killed: they go.
skiff_roots=/run/skiff/roots
skiff_auto=/nix/var/nix/gcroots/auto
skiff_current=/run/current-system
skiff_root() {
	# Few processes: the directories are there after the first deploy,
	# and only roots there can be stale.
	[ -d "$skiff_roots" ] || (umask 077 && mkdir -p "$skiff_roots") || return 1
	[ -d "$skiff_auto" ] || (umask 022 && mkdir -p "$skiff_auto") || return 1
	for skiff_f in "$skiff_roots"/*; do
		if [ -L "$skiff_f" ]; then find "$skiff_roots" -type l -mmin +1440 -exec rm -f {} + 2>/dev/null; fi
		break
	done
	[ -n "$3" ] || return 1
	ln -sfn "$2" "$skiff_roots/$1" && ln -sfn "$skiff_roots/$1" "$skiff_auto/$3" || return 1
	return 0
}
# skiff_invalid [PATH [BASE]] prints the store paths read on standard
# input that the store lacks, with one nix-store. A garbage collection
# already running read the roots before skiff_root made PATH's: when PATH
# is reported valid, a realise (which substitutes nothing) registers it as
# a temporary root, so that it and its closure stay valid; PATH is
# reported missing when it was collected in between. A PATH the store
# lacks needs no realise. The paths on standard input are PATH's closure
# (every caller's): when the host runs PATH already (a redeploy finding it
# up to date), none is missing and no nix-store runs, since the running
# system and its closure are valid, and its own GC root and the processes
# it runs keep them so.
# With BASE (the system the deployer's last deploy left on the host), the
# paths on standard input are only those of PATH's closure that BASE's
# lacks: a valid path's closure is valid, so BASE is checked with them.
# When the store lacks BASE, "base invalid" is all that is printed: the
# caller asks again with the whole closure.
skiff_invalid() {
	if [ -n "${1:-}" ] && [ "$(readlink "$skiff_current" 2>/dev/null)" = "$1" ]; then
		return 0
	fi
	skiff_inv=$(xargs nix-store --check-validity --print-invalid ${2:+"$2"}) || return
	if [ -n "${2:-}" ]; then
		case "
$skiff_inv
" in
		*"
$2
"*) echo "base invalid"; return 0 ;;
		esac
	fi
	[ -z "$skiff_inv" ] || printf '%s\n' "$skiff_inv"
	[ -n "${1:-}" ] || return 0
	case "
$skiff_inv
" in
	*"
$1
"*) return 0 ;;
	esac
	nix-store --realise --option substitute false "$1" >/dev/null 2>&1 || printf '%s\n' "$1"
	return 0
}
# skiff_take ID PATH NAME is skiff_root ID PATH NAME, saying on standard
# error why it failed; with ID empty it roots nothing.
skiff_take() {
	[ -n "$1" ] || return 0
	skiff_root "$1" "$2" "$3" && return 0
	echo "cannot make the GC root $skiff_roots/$1 for $2" >&2
	return 1
}
# skiff_dfline prints df -Pk's line for the filesystem holding the store
# (nothing when df says nothing); skiff_df prints it as "df LINE". The
# store query reads it before anything opens the store, which recreates
# the space Nix reserves (gc-reserved-space) that a collection released.
skiff_dfline() {
	skiff_d=/nix/store
	[ -d "$skiff_d" ] || skiff_d=/nix
	df -Pk "$skiff_d" 2>/dev/null | { read -r _ && read -r l && printf '%s' "$l"; }
}
skiff_df() {
	echo "df $(skiff_dfline)"
}
# skiff_unroot ID NAME removes what skiff_root ID PATH NAME made.
skiff_unroot() {
	if [ -n "${2:-}" ]; then rm -f "$skiff_auto/$2"; fi
	rm -f "$skiff_roots/$1"
}
