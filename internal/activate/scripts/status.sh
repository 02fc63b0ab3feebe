# shellcheck shell=sh
# Print the supervisor's state line, whether it still runs (1 or 0), then
# its output from byte offset $2 (1-based). First wait on the host, up to
# $4 tenths of a second, for something to report: a state other than $3,
# the supervisor gone, or new output. Liveness is read before the state:
# the supervisor writes its final state before it removes its pid file, so
# "not running" always comes with a final state. A supervisor that starts
# between the two reads has written its pid before its first state, so
# liveness is read once more when the first read found none: "not running"
# with a state that is not final then means the supervisor really died.
#
# With $5 = follow (on the host's session, which passes output on as it
# comes), the output is printed as it grows and is no reason to stop,
# nor is the state "activating" (the deployer waits for the activation's
# end), nor a supervisor that has not started yet; the state line and
# liveness go to descriptor 3 at the end.
#
# The wait is woken by the supervisor, which writes a line to the FIFO
# DIR/wake at each change of state and at its end (supervisor.sh), and by
# a ticker (skiff_ticker: every tenth of a second; when following, to
# pass the output on, after a fifth, then naps that double up to a
# second), whose lines count down $4 by the tenths they slept. Without
# the FIFO, naps.
d=$1 off=$2 last=$3 n=$4 follow=${5:-}
# The supervisor is looked at with watch.sh's skiff_observe (sourced
# first), which sets a and s.
a=0 s=''
ev=0 ticker='' from=1 upto=1
if [ -n "$follow" ]; then from=2 upto=10; fi
if [ -p "$d/wake" ]; then exec 5<>"$d/wake" && ev=1; fi
while :; do
	skiff_observe "$d"
	size=$(wc -c 2>/dev/null <"$d/log") || size=0
	if [ -n "$follow" ] && [ "$size" -ge "$off" ]; then
		tail -c +"$off" "$d/log" 2>/dev/null | head -c "$((size - off + 1))"
		off=$((size + 1))
	fi
	news=$s live=$a
	if [ -n "$follow" ]; then
		if [ "$s" = activating ]; then news=$last; fi
		# A supervisor not started yet (no state) is waited for.
		if [ -z "$s" ]; then live=1; fi
	fi
	if [ "$news" != "$last" ] || [ "$live" = 0 ] || [ "$size" -ge "$off" ] || [ "$n" -le 0 ]; then break; fi
	if [ "$ev" = 1 ]; then
		if [ -z "$ticker" ]; then
			skiff_ticker "$from" "$upto" >&5 2>/dev/null </dev/null &
			ticker=$!
		fi
		read -r e <&5 || e="t 1"
		case $e in "t "*) n=$((n - ${e#t })) ;; esac
	else
		n=$((n - 1))
		sleep 0.1 2>/dev/null || n=0
	fi
done
if [ -n "$ticker" ]; then kill "$ticker" 2>/dev/null; fi
if [ -n "$follow" ]; then
	printf '%s\n%s\n' "$s" "$a" >&3
	exit 0
fi
printf '%s\n%s\n' "$s" "$a"
tail -c +"$2" "$d/log" 2>/dev/null || true
