# skiff gc's collection on a host (root.sh's functions come first):
# nix-store --gc, with the free space of the store's filesystem before and
# after it ("before LINE", "after LINE", LINE being skiff_dfline's) around
# nix-store's own summary.
echo "before $(skiff_dfline)"
nix-store --gc || exit
echo "after $(skiff_dfline)"
