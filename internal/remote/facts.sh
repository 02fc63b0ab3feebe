# What skiff doctor reads on a host, in the very ssh command of its login:
# one KEY<TAB>VALUE line each.
#   arch, kernel   uname -m, uname -s
#   nix            nix-store --version (empty when nix is missing)
#   sudo           for a login other than root: the exit code of
#                  "sudo -n true" and its message, tab-separated
#   storerw        "yes" when the Nix database can be written (as root, or
#                  through sudo when it works), else why not
#   df             PATH and its line of df -Pk, for /nix/store and /boot
#   systemd        "yes" when systemctl is present; failed: one failed unit each
#   lock           PATH, held (yes/no), owner: NixOS's activation lock (probed
#                  with flock -n: a lock file left by a dead process is not
#                  held) and skiff's deploy lock (held while its keeper or an
#                  activation it started lives)
# $1, when not empty, is a directory standing for / (for tests); the
# machine's own systemd is then not asked.
root=${1-}
printf 'arch\t%s\n' "$(uname -m)"
printf 'kernel\t%s\n' "$(uname -s)"
printf 'nix\t%s\n' "$(nix-store --version 2>/dev/null | head -n 1)"
db=$root/nix/var/nix/db
# storerw [sudo -n]: whether the Nix database can be written.
storerw() {
	if t=$("$@" mktemp "$db/.skiff-doctor.XXXXXX" 2>&1); then
		"$@" rm -f "$t"
		printf 'storerw\tyes\n'
	else
		printf 'storerw\t%s\n' "$(printf '%s' "$t" | tr '\n\t' '  ')"
	fi
}
if [ "$(id -u)" = 0 ]; then
	storerw
else
	e=$(sudo -n true 2>&1)
	c=$?
	printf 'sudo\t%s\t%s\n' "$c" "$(printf '%s' "$e" | tr '\n\t' '  ')"
	if [ "$c" = 0 ]; then storerw sudo -n; fi
fi
for d in /nix/store /boot; do
	[ -d "$root$d" ] || continue
	printf 'df\t%s\t%s\n' $d "$(df -Pk "$root$d" 2>/dev/null | tail -n 1)"
done
if command -v systemctl >/dev/null 2>&1 && [ -z "$root" ]; then
	printf 'systemd\tyes\n'
	systemctl list-units --failed --plain --no-legend 2>/dev/null | while read -r u _; do printf 'failed\t%s\n' "$u"; done
fi
# alive PID: the process lives (ps sees another user's, which kill -0 may not signal).
alive() { kill -0 "$1" 2>/dev/null || ps -p "$1" >/dev/null 2>&1; }
l=/run/nixos/switch-to-configuration.lock
if [ -e "$root$l" ]; then
	held=no
	if command -v flock >/dev/null 2>&1 && ! flock -n "$root$l" true 2>/dev/null; then held=yes; fi
	printf 'lock\t%s\t%s\t\n' $l $held
fi
l=/run/skiff/lock
if [ -d "$root$l" ]; then
	# The owner is read once: what is said follows that one read.
	o=$(cat "$root$l/owner" 2>/dev/null)
	held=no
	k=$(printf '%s\n' "$o" | sed -n 's/^keeper=//p')
	if [ -n "$k" ] && alive "$k"; then held=yes; fi
	for f in "$root"/run/skiff/act-*/pid; do
		[ -f "$f" ] && alive "$(cat "$f")" && held=yes
	done
	printf 'lock\t%s\t%s\t%s\n' $l $held "$(printf '%s\n' "$o" | grep -E '^(user|machine|since)=' | tr '\n' ' ')"
fi
exit 0
