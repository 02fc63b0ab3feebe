# skiff-sudo: run a command as root through "sudo -S" on a host whose sudo
# asks the login user for a password, so that sudo, and only sudo, can ever
# read that password.
#
# Usage: sh -c "$(cat sudo.sh)" skiff-sudo INPUT COMMAND [ARG...]
# Standard input: the password line, then (INPUT = stdin) the command's own
# input. INPUT = none gives the command /dev/null instead.
#
# Why this shape:
# - "read" is a shell builtin that reads a pipe one byte at a time, so it
#   takes the password line and leaves the rest of standard input unread.
#   The password then lives in this shell's memory only: it is never an
#   argument (ps) nor an exported variable (/proc/PID/environ).
# - sudo gets it alone, on a pipe written by the printf builtin (no exec,
#   so no argv either). Whether sudo reads it (it asks), or not (NOPASSWD,
#   cached credentials), the root shell sudo starts replaces that pipe as
#   its standard input before anything else runs: the command never sees
#   it, and leftover password bytes die with the pipe.
# - The command's own input cannot travel on another descriptor (sudo
#   closes descriptors >= 3), so cat feeds it through a FIFO in a private
#   (0700) directory, removed on exit.
set -u
if ! IFS= read -r pw; then
	echo "skiff-sudo: no sudo password on standard input" >&2
	exit 1
fi
input=$1
shift
src=/dev/null
if [ "$input" = stdin ]; then
	umask 077
	d=$(mktemp -d "${TMPDIR:-/tmp}/skiff-sudo.XXXXXX") || exit 1
	trap 'rm -rf "$d"' EXIT
	trap 'exit 129' HUP
	trap 'exit 130' INT
	trap 'exit 143' TERM
	mkfifo "$d/in" || exit 1
	src=$d/in
	# An asynchronous command's standard input is /dev/null unless
	# redirected: hand the real one over on descriptor 3.
	exec 3<&0
	cat <&3 >"$src" 3<&- &
	feeder=$!
	exec 3<&-
fi
# The root shell: first its standard input, then the command.
# shellcheck disable=SC2016 # expanded by the root shell, not this one
printf '%s\n' "$pw" | sudo -S -p '' -- sh -c 'exec <"$1" && shift && exec "$@"' sh "$src" "$@"
rc=$?
pw=
# The command has ended: a feeder still waiting for input (or for a reader,
# when sudo refused) has nothing left to do. SIGKILL: a TERM that reaches
# the feeder before its new subshell has reset the traps it inherited
# (this shell traps TERM) is caught and then dropped, and the feeder would
# wait for ever to open the FIFO, holding the session's output open.
if [ -n "${feeder-}" ]; then kill -9 "$feeder" 2>/dev/null; fi
exit "$rc"
