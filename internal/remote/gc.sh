# skiff gc's collection on a host: nix-store --gc, with the free space of
# the store's filesystem before and after it ("before LINE", "after LINE",
# LINE being df -Pk's line for it) around nix-store's own summary.
d=/nix/store
[ -d "$d" ] || d=/nix
echo "before $(df -Pk "$d" 2>/dev/null | tail -n 1)"
nix-store --gc || exit
echo "after $(df -Pk "$d" 2>/dev/null | tail -n 1)"
