# Functions of the host's deploy lock, /run/skiff/lock, shared by the
# lock keeper (lock.go) and the session agent (session.sh); sourced, not
# run on its own.
#
# skiff_lock USER MACHINE PID SINCE BREAK [OP] takes the lock for the
# calling shell, the "keeper" whose pid ($$) the owner file records, and
# prints "skiff-lock: locked" (after "skiff-lock: stale OWNER" or
# "skiff-lock: broken OWNER" when it took one over), or prints
# "skiff-lock: held OWNER" and returns 3. A lock whose keeper is gone
# and whose activation supervisors have all ended is stale and taken
# over; BREAK = 1 breaks a live one. OP, when set, is what holds the lock
# (gc). skiff_unlock removes the lock if this shell keeps it.
skiff_lockdir=/run/skiff
skiff_lockfile=/run/skiff/lock
# skiff_ownerof DIR: the owner file of the lock in DIR, on one line.
skiff_ownerof() { tr '\n' ' ' 2>/dev/null <"$1/owner"; }
skiff_lockowner() { skiff_ownerof "$skiff_lockfile"; }
# skiff_locklive OWNER: whether the lock whose owner file read OWNER (one
# line, skiff_lockowner) is live: its keeper runs, or an activation
# supervisor does.
skiff_locklive() {
	skiff_k=
	case " $1" in *" keeper="*) skiff_k=${1##*keeper=} && skiff_k=${skiff_k%% *} ;; esac
	if [ -n "$skiff_k" ] && kill -0 "$skiff_k" 2>/dev/null; then return 0; fi
	for skiff_f in "$skiff_lockdir"/act-*/pid; do
		[ -f "$skiff_f" ] && kill -0 "$(cat "$skiff_f")" 2>/dev/null && return 0
	done
	return 1
}
# skiff_owns DIR: whether the lock in DIR is this shell's (shell builtins
# only); skiff_keeps: whether this shell keeps the lock.
skiff_owns() {
	while IFS= read -r skiff_l; do
		[ "$skiff_l" = "keeper=$$" ] && return 0
	done 2>/dev/null <"$1/owner"
	return 1
}
skiff_keeps() { skiff_owns "$skiff_lockfile"; }
skiff_lock() {
	if skiff_keeps; then
		echo "skiff-lock: locked"
		return 0
	fi
	[ -d "$skiff_lockdir" ] || (umask 077 && mkdir -p "$skiff_lockdir") || return 1
	skiff_t=$skiff_lockdir/.lock.$$
	if [ -e "$skiff_t" ]; then rm -rf "$skiff_t" || return 1; fi
	(umask 077 && mkdir "$skiff_t") &&
		printf 'user=%s\nmachine=%s\npid=%s\nsince=%s\nkeeper=%s\n' "$1" "$2" "$3" "$4" "$$" >"$skiff_t/owner" || return 1
	if [ -n "${6:-}" ]; then echo "op=$6" >>"$skiff_t/owner" || return 1; fi
	# The owner is read once, and what is said and done follows that one
	# read. A lock with no owner to read was being released (by a skiff
	# that removes it with rm -rf, which takes the owner file first): the
	# lock is tried again, for half a second at most, before it counts as
	# stale.
	skiff_n=0 skiff_tries=0
	while ! mv -T "$skiff_t" "$skiff_lockfile" 2>/dev/null; do
		skiff_tries=$((skiff_tries + 1))
		skiff_o=$(skiff_lockowner)
		if [ -z "$skiff_o" ] && [ "$skiff_n" -lt 50 ]; then
			skiff_n=$((skiff_n + 1))
			sleep 0.01 2>/dev/null || sleep 1
			continue
		fi
		if [ "$skiff_tries" -gt 100 ] || { skiff_locklive "$skiff_o" && [ "$5" != 1 ]; }; then
			echo "skiff-lock: held $skiff_o"
			rm -rf "$skiff_t"
			return 3
		fi
		if skiff_locklive "$skiff_o"; then skiff_how=broken; else skiff_how=stale; fi
		# Taken over in one rename: of two skiffs that read the same lock,
		# one moves it aside, the other finds it gone and tries again. What
		# was moved is held against the read: a lock taken meanwhile goes
		# back.
		skiff_a=$skiff_lockdir/.old.$$
		rm -rf "$skiff_a"
		mv -T "$skiff_lockfile" "$skiff_a" 2>/dev/null || continue
		if [ "$(skiff_ownerof "$skiff_a")" != "$skiff_o" ]; then
			mv -T "$skiff_a" "$skiff_lockfile" 2>/dev/null || rm -rf "$skiff_a"
			continue
		fi
		rm -rf "$skiff_a"
		echo "skiff-lock: $skiff_how $skiff_o"
		if ! mv -T "$skiff_t" "$skiff_lockfile" 2>/dev/null; then
			echo "skiff-lock: held $(skiff_lockowner)"
			rm -rf "$skiff_t"
			return 3
		fi
		break
	done
	skiff_sweep
	echo "skiff-lock: locked"
}
# skiff_sweep removes what a shell killed between its rename and its rm
# left beside the lock (.lock.PID, .old.PID, .gone.PID), once PID has
# ended; a live PID may be a skiff in the middle of it. Run by the lock's
# new keeper, with shell builtins only unless there is something to
# remove.
skiff_sweep() {
	for skiff_f in "$skiff_lockdir"/.lock.* "$skiff_lockdir"/.old.* "$skiff_lockdir"/.gone.*; do
		[ -d "$skiff_f" ] || continue
		skiff_p=${skiff_f##*.}
		case $skiff_p in "" | *[!0-9]* | "$$") continue ;; esac
		kill -0 "$skiff_p" 2>/dev/null || rm -rf "$skiff_f"
	done
}
# skiff_unlock moves the lock aside in one rename, so that no one ever
# reads a lock without its owner, and removes it there; one that is not
# this shell's after all (broken and taken since skiff_keeps read it) is
# put back.
skiff_unlock() {
	skiff_keeps || return 0
	skiff_g=$skiff_lockdir/.gone.$$
	if [ -e "$skiff_g" ]; then rm -rf "$skiff_g"; fi
	mv -T "$skiff_lockfile" "$skiff_g" 2>/dev/null || return 0
	if skiff_owns "$skiff_g"; then
		rm -rf "$skiff_g"
	else
		mv -T "$skiff_g" "$skiff_lockfile" 2>/dev/null || rm -rf "$skiff_g"
	fi
}
