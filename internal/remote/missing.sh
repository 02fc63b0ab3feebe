# A deploy's store query (root.sh's functions come first): the free space
# of the store, the new system PATH rooted as ID (unless ID is empty),
# then which of the paths on standard input the store lacks (skiff_invalid,
# with the base system BASE when given).
# Usage: missing.sh ID PATH NAME [BASE]
skiff_df
skiff_take "$1" "$2" "$3" || exit 1
skiff_invalid "$2" "${4:-}"
