# shellcheck shell=sh
# skiff's activation supervisor: owns the rollback decision on the host.
# Arguments: DIR NEW OLD WINDOW_SECONDS GENERATION [PROFILE [INSTALL]]
# (OLD and GENERATION may be empty; PROFILE defaults to the system
# profile; INSTALL 1 (re)installs the boot loader where a step makes a
# boot default, as nixos-rebuild --install-bootloader does).
# Package remote's restore.sh and ticker.sh functions come first.
set -u
dir=$1 new=$2 old=$3 window=$4 gen=$5 P=${6:-/nix/var/nix/profiles/system}
# switch-to-configuration reads it in its boot steps; test ignores it.
if [ "${7-}" = 1 ]; then export NIXOS_INSTALL_BOOTLOADER=1; fi
exec </dev/null >>"$dir/log" 2>&1
echo $$ >"$dir/pid"
# Events instead of polls, where launch.sh made the FIFOs: each change of
# state (and the end) writes a line to DIR/wake, which status.sh and
# decide.sh wait on; decide.sh writes one to DIR/poke after the decision,
# which the wait below reads, woken besides by a ticker (the window's
# clock). Both are opened read-write, which never blocks (nor does a
# write, for the few lines a run makes). Without them, naps.
wake=0 ticker=''
if [ -p "$dir/wake" ] && [ -p "$dir/poke" ]; then
	exec 4<>"$dir/wake" 5<>"$dir/poke" && wake=1
fi
trap '[ -z "$ticker" ] || kill "$ticker" 2>/dev/null' EXIT
signal() { if [ "$wake" = 1 ]; then echo s >&4; fi; }
st() { printf '%s\n' "$*" >"$dir/state.tmp" && mv -f "$dir/state.tmp" "$dir/state" && signal; }
decide() { printf '%s\n' "$1" >"$dir/decision.tmp" && mv -f "$dir/decision.tmp" "$dir/decision"; }
# The window is counted on a monotonic clock, never on the wall clock,
# which activation may step (restarting chronyd or timesyncd): t is
# /proc/uptime in hundredths of a second where it exists (Linux,
# CLOCK_BOOTTIME), else the sum of the naps taken (macOS), which only ever
# makes the window longer.
t=0 mono=0
[ -r /proc/uptime ] && mono=1
now() {
	if [ "$mono" = 1 ] && read -r up _ </proc/uptime; then
		case $up in
		*.??) t=$((${up%.*} * 100 + 1${up#*.} - 100)) ;;
		*) t=$((${up%.*} * 100)) ;;
		esac
	else
		mono=0 # count the naps from here on
	fi
}
nap() {
	if sleep 0.05 2>/dev/null; then n=5; else sleep 1; n=100; fi
	[ "$mono" = 1 ] || t=$((t + n))
}
# pause waits for the decision: a poke, or a tick of the ticker
# (skiff_ticker: naps of half a second, then of a second; without
# /proc/uptime, each tick adds what it slept to the window's clock).
pause() {
	if [ "$wake" = 0 ]; then
		nap
		return
	fi
	if [ -z "$ticker" ]; then
		skiff_ticker 5 10 >&5 2>/dev/null </dev/null &
		ticker=$!
	fi
	read -r ev <&5 || ev="t 5"
	case $ev in "t "*) [ "$mono" = 1 ] || t=$((t + ${ev#t } * 10)) ;; esac
}
st activating
"$new/bin/switch-to-configuration" test 4>&- 5>&-
rc=$?
st "activated $rc"
now
end=$((t + (window + 1) * 100))
while [ ! -e "$dir/decision" ]; do
	now
	if [ "$t" -ge "$end" ] && mkdir "$dir/decided" 2>/dev/null; then
		decide "rollback not confirmed within ${window}s: the deployer vanished or lost SSH access"
	fi
	[ -e "$dir/decision" ] || pause
done
if [ -n "$ticker" ]; then kill "$ticker" 2>/dev/null; ticker=; fi
read -r verb reason <"$dir/decision" || true
if [ "$verb" = commit ]; then
	st committing
	oldlink=$(readlink "$P" 2>/dev/null) || oldlink=
	if [ -n "$gen" ]; then
		nix-env -p "$P" --switch-generation "$gen" 4>&- 5>&-
	else
		nix-env -p "$P" --set "$new" 4>&- 5>&-
	fi
	if [ $? -ne 0 ]; then
		verb=rollback reason="setting the system profile failed"
	elif ! "$new/bin/switch-to-configuration" boot 4>&- 5>&-; then
		# The profile back where it was (restore.sh, as a plain
		# activation does), and its boot default.
		n=
		[ -n "$gen" ] || n=$(skiff_genof "$(readlink "$P")")
		skiff_restore "$P" "$(skiff_genof "$oldlink")" "$n" 4>&- 5>&-
		if [ -n "$oldlink" ]; then
			"$(readlink -f "$P")/bin/switch-to-configuration" boot 4>&- 5>&-
		fi
		verb=rollback reason="making the new system the boot default failed"
	else
		st "committed $(readlink "$P")"
		rm -f "$dir/pid"
		signal
		exit 0
	fi
fi
st "rolling-back $reason"
if [ -z "$old" ]; then
	st "stranded $reason"
	rm -f "$dir/pid"
	signal
	exit 1
fi
"$old/bin/switch-to-configuration" test 4>&- 5>&-
st "rolled-back $? $reason"
rm -f "$dir/pid"
signal
