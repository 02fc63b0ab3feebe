# Builder of a lab nix-darwin system's toplevel, shaped like nix-darwin's
# system.build.toplevel: activate (run as root), activate-user (run as the login
# user, like older nix-darwin), darwin-version.json, sw/bin/darwin-rebuild, etc/ and
# Library/LaunchDaemons/. No bin/switch-to-configuration, no nixos-version.
set -eu
PATH=/usr/bin:/bin
mkdir -p "$out/Library/LaunchDaemons" "$out/sw/bin"
ln -s "$etc/etc" "$out/etc"
printf '{"darwinLabel":"%s","darwinRevision":"lab","nixpkgsRevision":"lab"}\n' "$darwinLabel" >"$out/darwin-version.json"
printf '%s' "$hostSystem" >"$out/system"

cat >"$out/Library/LaunchDaemons/org.nixos.activate-system.plist" <<PLIST
<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict><key>Label</key><string>org.nixos.activate-system</string></dict></plist>
PLIST

# activate: the lab's activation (keys, /run/current-system), as root.
cat >"$out/activate" <<SCRIPT
#!/bin/sh
# Activation script of $out (skiff lab nix-darwin system).
if [ "\$(id -u)" != 0 ]; then echo "activate: must run as root" >&2; exit 1; fi
echo "activating system..."
LAB_ACTIVATION_FAILS=$activationFails LAB_ACTIVATION_DELAY=0 $tools/libexec/lab/activate $out "\$@" || exit \$?
mkdir -p /run/lab-darwin
printf '%s\n' "$out" >/run/lab-darwin/activated
SCRIPT

# activate-user: older nix-darwin's per-user part; records who ran it.
cat >"$out/activate-user" <<SCRIPT
#!/bin/sh
echo "setting up user launchd services..."
mkdir -p /run/lab-darwin 2>/dev/null && printf '%s %s\n' "\$(id -un)" "$out" >"/run/lab-darwin/activate-user.\$(id -un)" || true
SCRIPT

cat >"$out/sw/bin/darwin-rebuild" <<SCRIPT
#!/bin/sh
echo "darwin-rebuild: the lab's nix-darwin systems are deployed by skiff" >&2
exit 1
SCRIPT

chmod 0555 "$out/activate" "$out/activate-user" "$out/sw/bin/darwin-rebuild"
