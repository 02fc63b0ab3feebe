# shellcheck shell=sh
# Make the supervisor's directory ($1) and start the detached supervisor
# given as the other arguments, with no input and output to a file.
dir=$1; shift
umask 077
mkdir -p /run/skiff && mkdir "$dir" || exit 1
# The supervisor's event FIFOs (see supervisor.sh); without them, naps.
mkfifo "$dir/wake" "$dir/poke" 2>/dev/null || rm -f "$dir/wake" "$dir/poke"
if ! "$@" </dev/null >"$dir/launch.log" 2>&1; then cat "$dir/launch.log" >&2; exit 1; fi
