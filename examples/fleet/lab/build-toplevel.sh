# Builder of a lab system's toplevel, shaped like NixOS's system.build.toplevel.
set -eu
PATH=/usr/bin:/bin
mkdir -p "$out/bin" "$out/specialisation"
ln -s "$etc/etc" "$out/etc"
ln -s "$base" "$out/sw"
ln -s "$kernel/bzImage" "$out/kernel"
ln -s "$kernel/initrd" "$out/initrd"
printf '%s' "$nixosVersion" >"$out/nixos-version"
printf '%s' "$initInterfaceVersion" >"$out/init-interface-version"
printf '%s' "$system" >"$out/system"
printf 'init=%s/init loglevel=4' "$out" >"$out/kernel-params"

cat >"$out/activate" <<SCRIPT
#!/bin/sh
# Activation script of $out (skiff lab system).
LAB_ACTIVATION_FAILS=$activationFails LAB_ACTIVATION_DELAY=$activationDelay exec $tools/libexec/lab/activate $out "\$@"
SCRIPT

cat >"$out/dry-activate" <<SCRIPT
#!/bin/sh
# Dry activation of $out: the lab's activation has no dry-run snippets.
exit 0
SCRIPT

cat >"$out/bin/switch-to-configuration" <<SCRIPT
#!/bin/sh
exec $tools/libexec/lab/switch-to-configuration $out "\$@"
SCRIPT

cat >"$out/init" <<SCRIPT
#!/bin/sh
echo "$out is a skiff lab system: it is booted by the lab, not by a kernel" >&2
exit 1
SCRIPT

chmod 0555 "$out/activate" "$out/dry-activate" "$out/bin/switch-to-configuration" "$out/init"
