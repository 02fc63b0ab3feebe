# Builder of etc-NAME: writes the text files of $manifestPath under $out.
# "@file PATH" starts a file (relative to $out); the lines after it are its content.
set -eu
PATH=/usr/bin:/bin
mkdir -p "$out"
cur=
while IFS= read -r line || [ -n "$line" ]; do
	case $line in
	"@file "*)
		cur=$out/${line#@file }
		mkdir -p "${cur%/*}"
		: >"$cur"
		;;
	*)
		if [ -z "$cur" ]; then
			echo "build-files.sh: text before the first @file line" >&2
			exit 1
		fi
		printf '%s\n' "$line" >>"$cur"
		;;
	esac
done <"$manifestPath"
