# Builder of linux-lab: small stand-ins for a kernel image, an initrd and the kernel's
# modules, for kernel version $version.
set -eu
PATH=/usr/bin:/bin
mkdir -p "$out/lib/modules/$version"
printf 'skiff lab kernel stand-in %s\n' "$version" >"$out/bzImage"
printf 'skiff lab initrd stand-in %s\n' "$version" >"$out/initrd"
printf 'kernel/lab.ko\n' >"$out/lib/modules/$version/modules.order"
