# shellcheck shell=sh
# skiff_ticker FIRST LAST writes a line "t N" after each nap of N tenths
# of a second, the naps doubling from FIRST tenths up to LAST (1 to 10).
# It wakes a wait that events (a FIFO) end: output is passed on quickly
# at first, and a long wait costs a process a second, not ten. Where
# sleep takes whole seconds only, each nap is a second ("t 10").
skiff_ticker() {
	skiff_d=$1
	while :; do
		if [ "$skiff_d" -ge 10 ] || ! sleep "0.$skiff_d" 2>/dev/null; then
			sleep 1 || return
			skiff_d=10
		fi
		echo "t $skiff_d" || return
		skiff_d=$((skiff_d * 2))
		if [ "$skiff_d" -gt "$2" ]; then skiff_d=$2; fi
	done
}
