# shellcheck shell=sh
# Record the decision $2 in DIR $1 unless one was taken already (exit 3:
# too late).
mkdir "$1/decided" 2>/dev/null || exit 3
printf '%s\n' "$2" >"$1/decision.tmp" && mv -f "$1/decision.tmp" "$1/decision"
