# skiff-keys: write a host's keys, read from standard input, as root.
#
# Usage: sh -c "$(cat keys.sh)" skiff-keys
# Standard input (written by internal/keys: Frame), for each key:
#   key NAME DESTDIR USER GROUP PERMISSIONS LENGTH
#   BASE64 OF THE CONTENT, ON ONE LINE
# then "end COUNT".
#
# Why this shape:
# - The content travels base64-encoded on its own line, so the read
#   builtin (which reads a pipe byte by byte, never past the newline)
#   takes exactly one key at a time; no head -c or dd that might read
#   ahead on a pipe. It lives in this shell's memory and reaches base64 on
#   a pipe from the printf builtin: never an argument, never in the
#   environment, never printed (messages name keys, not contents).
# - Every field is checked again here (the deployer checked them first):
#   bad input exits 2 before anything is written.
# - Each key is written, with umask 077, to a temporary file in its
#   destination directory, which is then given its owner and mode and
#   renamed over the old key (a rename within a directory is atomic).
#   Nothing is renamed before the whole stream has arrived and every key
#   is ready: a cut stream leaves the old keys in place.
# - A missing destination directory is created 0750, owned by root and
#   by the group keys when the host has one (as NixOS's /run/keys).
set -u
umask 077
pending=""

cleanup() {
	for p in $pending; do
		rm -f "${p%%:*}"
	done
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
	echo "skiff-keys: $1" >&2
	exit "${2:-1}"
}

valid_name() {
	case $1 in '' | .* | -* | *[!A-Za-z0-9_.@+=,-]*) return 1 ;; esac
	return 0
}

valid_dir() {
	case $1 in /*) ;; *) return 1 ;; esac
	case $1 in / | *//* | */ | */./* | */../* | */. | */.. | *[!A-Za-z0-9_.@+=,/-]*) return 1 ;; esac
	return 0
}

valid_owner() {
	case $1 in '' | [!A-Za-z_]* | *[!A-Za-z0-9_.$-]*) return 1 ;; esac
	return 0
}

valid_perms() {
	case $1 in [0-7][0-7][0-7] | [0-7][0-7][0-7][0-7]) return 0 ;; esac
	return 1
}

valid_len() {
	case $1 in '' | *[!0-9]*) return 1 ;; esac
	return 0
}

decode() {
	if printf '%s\n' "$2" | base64 -d >"$1" 2>/dev/null; then return 0; fi
	printf '%s\n' "$2" | base64 -D >"$1" 2>/dev/null
}

makedir() {
	[ -d "$1" ] && return 0
	[ -e "$1" ] && fail "$1 exists and is not a directory"
	mkdir -p "$1" || fail "cannot create $1"
	dgroup=0
	if grep -q '^keys:' /etc/group 2>/dev/null; then dgroup=keys; fi
	if [ "$(id -u)" = 0 ]; then
		chown "root:$dgroup" "$1" 2>/dev/null || chown root "$1" || fail "cannot give $1 to root"
	fi
	chmod 0750 "$1" || fail "cannot set the mode of $1"
}

# gid_of GROUP names the group for chown: "root" (colmena's default) is
# group 0, which nix-darwin calls "wheel" and has no "root" for.
gid_of() {
	if [ "$1" = root ]; then echo 0; else echo "$1"; fi
}

count=0
ended=
set -f
while IFS= read -r line; do
	# shellcheck disable=SC2086 # the header's fields are split on purpose
	set -- $line
	case ${1-} in
	key)
		[ $# -eq 7 ] || fail "bad key header" 2
		name=$2 dir=$3 user=$4 group=$5 perms=$6 len=$7
		valid_name "$name" || fail "bad key name" 2
		valid_dir "$dir" || fail "key $name: bad destination directory" 2
		valid_owner "$user" || fail "key $name: bad user" 2
		valid_owner "$group" || fail "key $name: bad group" 2
		valid_perms "$perms" || fail "key $name: bad permissions" 2
		valid_len "$len" || fail "key $name: bad length" 2
		IFS= read -r data || fail "key $name: the stream ended before its content"
		makedir "$dir"
		dest=$dir/$name
		[ -d "$dest" ] && fail "key $name: $dest is a directory"
		tmp=$(mktemp "$dir/.skiff-key.XXXXXX") || fail "key $name: cannot create a file in $dir"
		pending="$pending $tmp:$dest"
		decode "$tmp" "$data" || fail "key $name: the content is not valid base64"
		data=
		got=$(wc -c <"$tmp" | tr -d ' ')
		[ "$got" = "$len" ] || fail "key $name: got $got bytes, want $len"
		if [ "$(id -u)" = 0 ]; then
			chown "$user:$(gid_of "$group")" "$tmp" || fail "key $name: cannot give $dest to $user:$group"
		fi
		chmod "$perms" "$tmp" || fail "key $name: cannot set the mode of $dest"
		count=$((count + 1))
		;;
	end)
		[ $# -eq 2 ] && [ "$2" = "$count" ] || fail "the stream announced ${2-?} keys, $count arrived" 2
		ended=1
		break
		;;
	*)
		fail "unexpected line in the stream" 2
		;;
	esac
done
[ -n "$ended" ] || fail "the stream ended after $count keys, before its end"
for p in $pending; do
	mv -f "${p%%:*}" "${p#*:}" || fail "cannot rename ${p%%:*} to ${p#*:}"
done
pending=
echo "wrote $count"
