# shellcheck shell=sh
# Run "$@" once the activation supervised in DIR $1 has ended: its state
# is no longer empty or "activating". Sent on the host's session behind
# the request that follows the activation, a health request (the failed
# units, a check's first attempt) runs as soon as the activation ends,
# with no round trip of its own. When it runs too early (that follow ended
# without the activation's end), it prints "skiff: too early" and exits
# 97, and the deployer asks again.
s=''
IFS= read -r s 2>/dev/null <"$1/state"
case $s in
'' | activating*)
	echo "skiff: too early" >&2
	exit 97
	;;
esac
shift
exec "$@"
