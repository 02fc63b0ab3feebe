# The store query of skiff diff (root.sh's functions come first): in
# sections, the free space of the store, the new system PATH rooted as ID
# (unless ID is empty), which of the paths on standard input the store
# lacks, and the closure of the running system CURRENT (when given) with
# the NAR size of each path. Only nix-store commands that every Nix
# version has.
# Usage: closure.sh ID PATH NAME [CURRENT]
skiff_df
skiff_take "$1" "$2" "$3" || exit 1
echo @missing
skiff_invalid "$2" || exit
[ -n "${4:-}" ] || exit 0
q=$(nix-store -q --requisites "$4") || exit
echo @closure
printf '%s\n' "$q"
echo @sizes
printf '%s\n' "$q" | xargs nix-store -q --size
