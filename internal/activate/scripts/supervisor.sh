# shellcheck shell=sh
# skiff's activation supervisor: owns the rollback decision on the host.
# Arguments: DIR NEW OLD WINDOW_SECONDS GENERATION [PROFILE] (OLD and
# GENERATION may be empty; PROFILE defaults to the system profile).
# Package remote's restore.sh functions come first.
set -u
dir=$1 new=$2 old=$3 window=$4 gen=$5 P=${6:-/nix/var/nix/profiles/system}
exec </dev/null >>"$dir/log" 2>&1
echo $$ >"$dir/pid"
st() { printf '%s\n' "$*" >"$dir/state.tmp" && mv -f "$dir/state.tmp" "$dir/state"; }
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
st activating
"$new/bin/switch-to-configuration" test
rc=$?
st "activated $rc"
now
end=$((t + (window + 1) * 100))
while [ ! -e "$dir/decision" ]; do
	now
	if [ "$t" -ge "$end" ] && mkdir "$dir/decided" 2>/dev/null; then
		decide "rollback not confirmed within ${window}s: the deployer vanished or lost SSH access"
	fi
	[ -e "$dir/decision" ] || nap
done
read -r verb reason <"$dir/decision" || true
if [ "$verb" = commit ]; then
	st committing
	oldlink=$(readlink "$P" 2>/dev/null) || oldlink=
	if [ -n "$gen" ]; then
		nix-env -p "$P" --switch-generation "$gen"
	else
		nix-env -p "$P" --set "$new"
	fi
	if [ $? -ne 0 ]; then
		verb=rollback reason="setting the system profile failed"
	elif ! "$new/bin/switch-to-configuration" boot; then
		# The profile back where it was (restore.sh, as a plain
		# activation does), and its boot default.
		n=
		[ -n "$gen" ] || n=$(skiff_genof "$(readlink "$P")")
		skiff_restore "$P" "$(skiff_genof "$oldlink")" "$n"
		if [ -n "$oldlink" ]; then
			"$(readlink -f "$P")/bin/switch-to-configuration" boot
		fi
		verb=rollback reason="making the new system the boot default failed"
	else
		st "committed $(readlink "$P")"
		rm -f "$dir/pid"
		exit 0
	fi
fi
st "rolling-back $reason"
if [ -z "$old" ]; then
	st "stranded $reason"
	rm -f "$dir/pid"
	exit 1
fi
"$old/bin/switch-to-configuration" test
st "rolled-back $? $reason"
rm -f "$dir/pid"
