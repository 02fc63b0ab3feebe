# A nix-darwin system's user activation, as the login user: TOPLEVEL's
# activate-user when the system has one (nix-darwin before 2024 split user
# activation out of activate), else nothing.
# Usage: activate-user.sh TOPLEVEL
[ -x "$1/activate-user" ] || exit 0
exec "$1/activate-user"
