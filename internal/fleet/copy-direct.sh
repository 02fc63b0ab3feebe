# Runs on a build host: copies paths from its store straight to a target,
# with nix-copy-closure and the build host's own ssh configuration, keys
# and known hosts.
# Usage: copy-direct.sh NIX_SSHOPTS DEST -s|"" PATH...
opts=$1 dest=$2 subst=$3
shift 3
# $subst is one word or none.
# shellcheck disable=SC2086
NIX_SSHOPTS="$opts" exec nix-copy-closure --to "$dest" $subst "$@"
