# shellcheck shell=sh
# Record the decision $2 in DIR $1 unless one was taken already, and say
# which: "decided" or "too-late" (exit 3 at the end). Then wait on the
# host, up to $4 tenths of a second, for the supervisor's final state,
# and print what status.sh prints (state line, liveness, output from byte
# offset $3): one command both confirms and tells how the activation
# ended. The supervisor is woken by a line on the FIFO DIR/poke, and wakes
# this wait by one on DIR/wake (supervisor.sh); a ticker (skiff_ticker,
# a second) counts $4 down. Without the FIFOs, naps.
#
# With $2 = wait, nothing is recorded: it prints "waiting", then the state
# lines once the supervisor has ended, without its output (the host's
# session gives the host back after it, while the proof runs).
d=$1 n=${4:-0} rc=0
if [ "$2" = wait ]; then
	echo waiting
elif mkdir "$d/decided" 2>/dev/null; then
	printf '%s\n' "$2" >"$d/decision.tmp" && mv -f "$d/decision.tmp" "$d/decision" || exit 1
	# Read-write: never blocks, supervisor or not.
	if [ -p "$d/poke" ]; then echo d 1<>"$d/poke"; fi
	echo decided
else
	echo too-late
	rc=3
fi
# The supervisor is looked at with watch.sh's skiff_observe (sourced
# first), which sets a and s.
a=0 s=''
ev=0 ticker=''
if [ -p "$d/wake" ]; then exec 5<>"$d/wake" && ev=1; fi
while :; do
	skiff_observe "$d"
	case $s in committed* | rolled-back* | stranded*) break ;; esac
	if [ "$a" = 0 ] || [ "$n" -le 0 ]; then break; fi
	if [ "$ev" = 1 ]; then
		if [ -z "$ticker" ]; then
			skiff_ticker 10 10 >&5 2>/dev/null </dev/null &
			ticker=$!
		fi
		read -r e <&5 || e="t 10"
		case $e in "t "*) n=$((n - ${e#t })) ;; esac
	else
		n=$((n - 1))
		sleep 0.1 2>/dev/null || n=0
	fi
done
if [ -n "$ticker" ]; then kill "$ticker" 2>/dev/null; fi
printf '%s\n%s\n' "$s" "$a"
if [ "$2" != wait ]; then tail -c +"${3:-1}" "$d/log" 2>/dev/null; fi
exit "$rc"
