# shellcheck shell=sh
# launch.sh for a transient systemd unit: it also writes the supervisor
# script ($2) to DIR/supervisor, which the unit runs. systemd expands
# $NAME, ${NAME} and $$ on a unit's command line when it starts it
# (systemd-run cannot turn that off before systemd 254), which would
# rewrite the script if it were an argument.
dir=$1 script=$2; shift 2
umask 077
mkdir -p /run/skiff && mkdir "$dir" || exit 1
# The supervisor's event FIFOs (see supervisor.sh); without them, naps.
mkfifo "$dir/wake" "$dir/poke" 2>/dev/null || rm -f "$dir/wake" "$dir/poke"
printf '%s\n' "$script" >"$dir/supervisor" || exit 1
if ! "$@" </dev/null >"$dir/launch.log" 2>&1; then cat "$dir/launch.log" >&2; exit 1; fi
