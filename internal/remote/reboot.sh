# What a host booted, read without privileges: one KEY=VALUE line each.
#   boot_id      changes at every boot: Linux's boot id, else (macOS) the boot time
#   current      /run/current-system, booted: /run/booted-system
#   booted_F, current_F  for F in kernel, initrd, kernel-modules: where the booted
#                and the running system's F resolve to (readlink -f), as NixOS's
#                switch-to-configuration compares them to say a reboot is needed
# $1, when given, is a directory standing for / (for tests).
root=${1-}
id=
if [ -r /proc/sys/kernel/random/boot_id ]; then
	read -r id </proc/sys/kernel/random/boot_id
elif command -v sysctl >/dev/null 2>&1; then
	id=$(sysctl -n kern.boottime 2>/dev/null)
fi
echo "boot_id=$id"
current=$(readlink "$root/run/current-system" 2>/dev/null)
booted=$(readlink "$root/run/booted-system" 2>/dev/null)
echo "current=$current"
echo "booted=$booted"
# The same system has the same parts: nothing to resolve.
[ "$current" != "$booted" ] || exit 0
# resolved PATH: where PATH leads, empty when it does not exist.
resolved() {
	if [ -e "$1" ]; then
		readlink -f "$1" 2>/dev/null
	fi
}
for f in kernel initrd kernel-modules; do
	echo "booted_$f=$(resolved "$root/run/booted-system/$f")"
	echo "current_$f=$(resolved "$root/run/current-system/$f")"
done
