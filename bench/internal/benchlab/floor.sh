#!/bin/sh
# The floor: what `nixos-rebuild switch --flake FLAKE#HOST --target-host root@HOST`
# does, less its checks. Evaluate and build (a cache hit), then over one multiplexed
# ssh connection copy the closure, set the system profile and switch; close the
# connection as nixos-rebuild's cleanup does. With dry-activate, what
# `nixos-rebuild dry-activate` does instead: copy the closure and run
# switch-to-configuration dry-activate, setting no profile (skiff diff's floor).
#
#   floor.sh SSH_CONFIG CONTROL_DIR FLAKE HOST [dry-activate]
set -eu
config=$1 control=$2 flake=$3 host=$4 action=${5:-switch}

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
if [ "$action" = dry-activate ]; then
	# shellcheck disable=SC2086
	ssh $NIX_SSHOPTS "root@$host" "$top/bin/switch-to-configuration" dry-activate
else
	# shellcheck disable=SC2086
	ssh $NIX_SSHOPTS "root@$host" nix-env -p /nix/var/nix/profiles/system --set "$top"
	# shellcheck disable=SC2086
	ssh $NIX_SSHOPTS "root@$host" "$top/bin/switch-to-configuration" switch
fi
# shellcheck disable=SC2086
ssh $NIX_SSHOPTS -O exit "root@$host" 2>/dev/null || true
