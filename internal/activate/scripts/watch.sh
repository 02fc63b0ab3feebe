# shellcheck shell=sh
# How status.sh and decide.sh look at the supervisor in a directory
# (sourced before each, not run on its own). The pid and the state (one
# line, replaced whole) are read with the shell's read: no process of
# their own.

# skiff_alive DIR: the supervisor runs.
skiff_alive() {
	skiff_p=''
	read -r skiff_p 2>/dev/null <"$1/pid"
	[ -n "$skiff_p" ] && kill -0 "$skiff_p" 2>/dev/null
}

# skiff_observe DIR: sets a (1 when the supervisor runs) and s (its state
# line) for the caller. Liveness is read before the state, and once more
# when the first read found none (status.sh says why).
# shellcheck disable=SC2034 # a and s are the caller's
skiff_observe() {
	a=0
	if skiff_alive "$1"; then a=1; fi
	s=''
	IFS= read -r s 2>/dev/null <"$1/state"
	if [ "$a" = 0 ] && skiff_alive "$1"; then a=1; fi
}
