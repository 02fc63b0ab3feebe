# Builder of linux-lab: small stand-ins for a kernel image and an initrd, for kernel
# version $version.
set -eu
PATH=/usr/bin:/bin
mkdir -p "$out"
printf 'skiff lab kernel stand-in %s\n' "$version" >"$out/bzImage"
printf 'skiff lab initrd stand-in %s\n' "$version" >"$out/initrd"
