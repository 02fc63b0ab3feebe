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
# The links, unless system.sh, run just before in the same shell, has
# read them.
if [ -z "${skiff_links-}" ]; then
	current=$(readlink "$root/run/current-system" 2>/dev/null)
	booted=$(readlink "$root/run/booted-system" 2>/dev/null)
fi
echo "current=$current"
echo "booted=$booted"
# The same system has the same parts: nothing to resolve.
[ "$current" != "$booted" ] || exit 0
# Where each part leads (readlink -f), empty when it does not exist: the
# parts that exist go to one readlink, which prints a line for each (and
# fails when it cannot: then every part is unknown).
set --
for f in kernel initrd kernel-modules; do
	for side in booted current; do
		if [ -e "$root/run/$side-system/$f" ]; then set -- "$@" "$root/run/$side-system/$f"; fi
	done
done
n=$#
ends=''
if [ "$n" -gt 0 ]; then ends=$(readlink -f "$@" 2>/dev/null) || ends=''; fi
for f in kernel initrd kernel-modules; do
	for side in booted current; do
		to=''
		if [ -n "$ends" ] && [ -e "$root/run/$side-system/$f" ]; then
			to=${ends%%
*}
			case $ends in *"
"*) ends=${ends#*
} ;; *) ends='' ;; esac
		fi
		echo "${side}_$f=$to"
	done
done
