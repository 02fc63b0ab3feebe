# Builder of lab-nixos-tools: the implementation of every lab system's
# bin/switch-to-configuration and activate.
set -eu
PATH=/usr/bin:/bin
mkdir -p "$out/libexec/lab"
cp "$switchScript" "$out/libexec/lab/switch-to-configuration"
cp "$activateScript" "$out/libexec/lab/activate"
chmod 0555 "$out/libexec/lab/switch-to-configuration" "$out/libexec/lab/activate"
