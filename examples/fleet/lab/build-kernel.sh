# Builder of linux-lab: small stand-ins for a kernel image and an initrd.
set -eu
PATH=/usr/bin:/bin
mkdir -p "$out"
printf 'skiff lab kernel stand-in\n' >"$out/bzImage"
printf 'skiff lab initrd stand-in\n' >"$out/initrd"
