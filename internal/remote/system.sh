# What a host runs, boots and keeps in its system profile, read in one go:
# one KEY=VALUE line each. Every reader of a host's systems and generations
# runs this script (with reboot.sh after it, see stateScript); parseState
# reads its output.
#   current, booted  where /run/current-system and /run/booted-system point
#   link             the system profile's link (system-N-link); profile: the
#                    system it resolves to
#   nix=missing      nix-store is not on the PATH
#   systemd=1        the host runs systemd (a supervisor can be a transient unit)
#   state            systemctl is-system-running
#   units            the failed units, as systemctl's JSON on one line; from a
#                    systemctl without JSON, "units=" then one unit= line each:
#                    unit, load, active, sub, description, tab-separated
#   gen              with "gens" as $2, one line per generation of the profile:
#                    NUMBER, the link's mtime (seconds), the system, its NixOS
#                    version, separated by tabs
# $1, when not empty, is a directory standing for / (for tests). Nothing
# here needs privileges.
root=${1-}
p=$root/nix/var/nix/profiles/system
current=$(readlink "$root/run/current-system" 2>/dev/null)
booted=$(readlink "$root/run/booted-system" 2>/dev/null)
# reboot.sh, which follows, reads these two again only when run alone.
# shellcheck disable=SC2034
skiff_links=1
echo "current=$current"
echo "booted=$booted"
echo "link=$(readlink "$p" 2>/dev/null)"
echo "profile=$(readlink -f "$p" 2>/dev/null)"
# With "links" as $2, systemd is not asked: the links (and the boot state,
# see stateScript) are what a deploy that expects the host to be up to date
# needs to see it is and say whether it needs a reboot.
[ "${2-}" = links ] || {
	command -v nix-store >/dev/null 2>&1 || echo "nix=missing"
	if [ -d "$root/run/systemd/system" ] && command -v systemd-run >/dev/null 2>&1; then echo systemd=1; fi
	# sctl is systemctl, given at most 10 seconds when timeout(1) is there: a
	# wedged systemd must not hang the read.
	sctl() {
		if command -v timeout >/dev/null 2>&1; then timeout 10 systemctl "$@"; else systemctl "$@"; fi
	}
	# With a fake root, the machine's own systemd is not asked.
	if command -v systemctl >/dev/null 2>&1 && [ -z "$root" ]; then
		echo "state=$(sctl is-system-running 2>/dev/null)"
		if u=$(sctl list-units --failed --all --output=json --no-pager 2>/dev/null); then
			# On one line (systemctl prints it so): joined by the shell,
			# without a process, should it come on several.
			case $u in *"
"*)
				set -f
				IFS='
'
				# shellcheck disable=SC2086 # split on newlines, globbing off
				u=$(printf '%s' $u)
				unset IFS
				set +f
				;;
			esac
			echo "units=$u"
		else
			# A systemctl older than --output=json: its plain table.
			echo "units="
			sctl list-units --failed --all --plain --no-legend --no-pager 2>/dev/null |
				while read -r u l a s d; do printf 'unit=%s\t%s\t%s\t%s\t%s\n' "$u" "$l" "$a" "$s" "$d"; done
		fi
	fi
}
# skiff_gens LINK...: a gen= line for each of the links that is a
# generation's symlink, with one readlink and one stat for them all: a
# host may keep hundreds of generations, and a process each would cost
# more than the rest of the read. Should either not answer for every link
# (a readlink or stat that takes one file only), each link is read on its
# own.
skiff_gens() {
	for l in "$@"; do
		shift
		if [ -L "$l" ]; then set -- "$@" "$l"; fi
	done
	[ $# -gt 0 ] || return 0
	tab=$(printf '\t')
	nl='
'
	if ts=$(readlink "$@" 2>/dev/null); then tsok=1; else tsok=0; fi
	if ms=$(stat -c %Y "$@" 2>/dev/null) || ms=$(stat -f %m "$@" 2>/dev/null); then msok=1; else msok=0; fi
	for l in "$@"; do
		n=${l##*/system-}
		n=${n%-link}
		if [ "$tsok" = 1 ]; then
			t=${ts%%"$nl"*}
			ts=${ts#*"$nl"}
		else
			t=$(readlink "$l")
		fi
		if [ "$msok" = 1 ]; then
			m=${ms%%"$nl"*}
			ms=${ms#*"$nl"}
		else
			m=$(stat -c %Y "$l" 2>/dev/null || stat -f %m "$l" 2>/dev/null)
		fi
		v=
		if [ -r "$t/nixos-version" ]; then read -r v <"$t/nixos-version" || true; fi
		echo "gen=$n$tab$m$tab$t$tab$v"
	done
}
if [ "${2-}" = gens ]; then skiff_gens "$p"-*-link; fi
