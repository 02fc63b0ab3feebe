#!/bin/sh
# The floor of skiff rollback: what `nixos-rebuild switch --rollback
# --target-host root@HOST` does, less its checks. Over one multiplexed ssh
# connection, point the system profile at its previous generation and switch
# to it; close the connection.
#
#   floor-rollback.sh SSH_CONFIG CONTROL_DIR HOST
set -eu
config=$1 control=$2 host=$3
profile=/nix/var/nix/profiles/system

opts="-F $config -o ControlMaster=auto -o ControlPath=$control/ssh-%n -o ControlPersist=60"
# $opts is a list of words, as nixos-rebuild's NIX_SSHOPTS.
# shellcheck disable=SC2086
ssh $opts "root@$host" nix-env -p "$profile" --rollback
# shellcheck disable=SC2086
ssh $opts "root@$host" "$profile/bin/switch-to-configuration" switch
# shellcheck disable=SC2086
ssh $opts -O exit "root@$host" 2>/dev/null || true
