#!/bin/sh
# The floor of skiff diff: what `nixos-rebuild dry-activate --flake FLAKE#HOST
# --target-host root@HOST` does, less its checks. Evaluate and build (a cache
# hit), then over one multiplexed ssh connection copy the closure and run
# switch-to-configuration dry-activate; close the connection.
#
#   floor-dry-activate.sh FLAKE HOST SSH_CONFIG CONTROL_DIR
set -eu
flake=$1 host=$2 config=$3 control=$4

out=$(nix --extra-experimental-features 'nix-command flakes' --option substituters '' \
	build --no-link --json "$flake#nixosConfigurations.$host.config.system.build.toplevel")
top=$(printf '%s\n' "$out" | sed -n 's/.*"out":"\([^"]*\)".*/\1/p')
if [ -z "$top" ]; then
	echo "floor: no output path in: $out" >&2
	exit 1
fi

NIX_SSHOPTS="-F $config -o ControlMaster=auto -o ControlPath=$control/ssh-%n -o ControlPersist=60"
export NIX_SSHOPTS
nix-copy-closure --to "root@$host" "$top"
# NIX_SSHOPTS is a list of words, as nixos-rebuild uses it.
# shellcheck disable=SC2086
ssh $NIX_SSHOPTS "root@$host" "$top/bin/switch-to-configuration" dry-activate
# shellcheck disable=SC2086
ssh $NIX_SSHOPTS -O exit "root@$host" 2>/dev/null || true
