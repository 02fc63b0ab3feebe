# skiff-session: the host side of one deploy's session, an agent that
# answers the deployer's requests on standard input, in order, one at a
# time, for as long as the input stays open.
#
# Usage: sh -c "$(cat lock.sh ticker.sh session.sh)" skiff-session [FIRST]
# (lock.sh's and ticker.sh's functions come first), run with the deploy's
# privileges. FIRST, when given, is the first requests, answered before
# any read from standard input: a request in the command's arguments
# needs no round trip of its own (sshd lets no input through before the
# command has started). It never holds a "stdin" request.
#
# A request is a line "VERB N" followed by N lines of its arguments: a
# line ":TEXT" starts an argument, a line "+TEXT" continues the one before
# it after a newline (an argument with newlines, read with the shell's
# read only). Verbs:
#   lock USER MACHINE PID SINCE BREAK [OP]  take the deploy lock (lock.sh),
#                                this shell being its keeper
#   release                      remove the lock if this shell keeps it
#   run ARGV...                  run ARGV, stdout captured
#   stream ARGV...               run ARGV, stdout and stderr passed on as
#                                they come
#   stdin DATA                   (before run or stream) the next command's
#                                standard input, base64 (never written to
#                                a file, never an argument)
#   input DATA                   the same for input that is not secret (a
#                                list of store paths): it may come in FIRST
# Commands run with standard input /dev/null unless given one, and with
# descriptor 3 open on a file whose lines come back as values.
#
# Every reply is a series of framed lines, so that output, values, errors
# and the end can never be confused:
#   BASE64     bytes of the command's output (a line without a space;
#              "b BASE64" too)
#   o TEXT     a value line (descriptor 3; the lock's answer)
#   e TEXT     a line of the command's standard error
#   = RC       the end of the reply, with the exit code
# The agent first says "= 0" once it is ready.
#
# End of input (the deployer is gone, or done) ends the agent: a lock it
# kept without a "release" is then found stale by the next deploy, as the
# lock keeper's is, once no activation supervisor runs.
set -u
first=${1-}
# Commands run with the umask the agent got (an activation under 077
# would make its files private); its own directory is private.
t=$(umask 077 && mktemp -d "${TMPDIR:-/tmp}/skiff-session.XXXXXX") || exit 1
trap 'rm -rf "$t"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
input=
# A FIFO, opened read-write (which never blocks), wakes follow when a
# streamed command ends; a ticker (ticker.sh) passes its output on
# meanwhile, at once at first, then once a second. Without it, naps.
fifo=0
if mkfifo "$t/wake" 2>/dev/null; then exec 4<>"$t/wake" && fifo=1; fi

# b64 FILE: the file as base64 lines, one process (a base64 line has no
# space, a tagged line has one; each full line holds a multiple of three
# bytes and so decodes on its own).
b64() {
	[ -s "$1" ] || return 0
	base64 <"$1"
}

# lines TAG FILE: each line of the file, tagged.
lines() {
	[ -s "$2" ] || return 0
	while IFS= read -r l || [ -n "$l" ]; do printf '%s %s\n' "$1" "$l"; done <"$2"
}

# decode TEXT: base64 TEXT to standard output.
decode() {
	if printf '%s\n' "$1" | base64 -d 2>/dev/null; then return 0; fi
	printf '%s\n' "$1" | base64 -D
}

# files: the files of a new request: its output, standard error, values
# and (a streamed command's) exit code. Each request has its own, so that
# a command's leftover child that still writes cannot mix into a later
# reply, and none is removed in between (the previous output is emptied:
# the directory goes when the agent ends).
k=0 out='' err='' val='' rcf=''
files() {
	if [ -n "$out" ]; then : >"$out"; fi
	k=$((k + 1))
	out=$t/out.$k err=$t/err.$k val=$t/val.$k rcf=$t/rc.$k
}

# launch: start "$@" in the background with its input, its output and
# stderr to $out, values to $val; $rcf appears when it ends (a streamed
# command, which follow passes on as it comes). Whoever sees $rcf waits
# for this subshell before reading it.
launch() {
	: >"$out"
	if [ -n "$input" ]; then
		(
			if [ "$stream" = 1 ]; then exec 2>&1; fi
			decode "$input" | "$@" 3>"$val" 4>&-
			echo $? >"$rcf"
			if [ "$stream" = 1 ] && [ "$fifo" = 1 ]; then echo e >&4; fi
		) >>"$out" 2>"$err" &
		input= # the input (keys) lives no longer than its command
	else
		(
			if [ "$stream" = 1 ]; then exec 2>&1; fi
			"$@" </dev/null 3>"$val" 4>&-
			echo $? >"$rcf"
			if [ "$stream" = 1 ] && [ "$fifo" = 1 ]; then echo e >&4; fi
		) >>"$out" 2>"$err" &
	fi
}

# follow: pass on $out as it grows until $rcf appears.
follow() {
	off=0 ticker=''
	while :; do
		done=0
		[ -f "$rcf" ] && done=1
		size=$(wc -c <"$out") || size=0
		size=$((size)) # BSD's wc pads the number with spaces
		if [ "$size" -gt "$off" ]; then
			tail -c +"$((off + 1))" "$out" | head -c "$((size - off))" >"$t/chunk"
			b64 "$t/chunk"
			off=$size
		fi
		[ "$done" = 1 ] && break
		if [ "$fifo" = 1 ]; then
			if [ -z "$ticker" ]; then
				skiff_ticker 1 10 >&4 2>/dev/null </dev/null &
				ticker=$!
			fi
			read -r _ <&4 || :
		else
			sleep 0.05 2>/dev/null || sleep 1
		fi
	done
	# SIGKILL: a TERM sent before the new subshell has reset the traps it
	# inherited (this shell traps TERM) is caught and then dropped, and the
	# ticker would outlive the request, holding up run's wait for ever.
	if [ -n "$ticker" ]; then kill -9 "$ticker" 2>/dev/null; fi
}

# run: run "$@" with its input, in the foreground, then reply. The
# subshell keeps a builtin or a function of that name from touching the
# agent, and costs no process: the shell runs its only command in place.
run() {
	files
	if [ "$stream" = 1 ]; then
		launch "$@"
		follow
		wait
		rc=
		read -r rc 2>/dev/null <"$rcf" || :
	elif [ -n "$input" ]; then
		decode "$input" | ("$@") >"$out" 2>"$err" 3>"$val" 4>&-
		rc=$?
		input= # the input (keys) lives no longer than its command
	else
		("$@") </dev/null >"$out" 2>"$err" 3>"$val" 4>&-
		rc=$?
	fi
	[ "$stream" = 1 ] || b64 "$out"
	lines o "$val"
	lines e "$err"
	printf '= %s\n' "${rc:-1}"
}

# serve: answer the requests of standard input until its end.
serve() {
	while IFS= read -r req; do
		verb=${req%% *} n=${req#* }
		case $n in '' | *[!0-9]*) n=0 ;; esac
		set --
		arg='' have=0
		while [ "$n" -gt 0 ] && IFS= read -r a; do
			case $a in
			+*) arg="$arg
${a#+}" ;;
			*)
				[ "$have" = 0 ] || set -- "$@" "$arg"
				arg=${a#:}
				;;
			esac
			have=1
			n=$((n - 1))
		done
		[ "$n" -eq 0 ] || exit 1
		[ "$have" = 0 ] || set -- "$@" "$arg"
		stream=0
		case $verb in
		lock)
			files
			skiff_lock "$@" >"$val" 2>"$err"
			rc=$?
			lines o "$val"
			lines e "$err"
			printf '= %s\n' "$rc"
			;;
		release)
			skiff_unlock
			echo "= 0"
			;;
		stdin | input)
			input=${1-}
			echo "= 0"
			;;
		run) run "$@" ;;
		stream)
			stream=1
			run "$@"
			;;
		*)
			printf 'e unknown request %s\n= 2\n' "$verb"
			;;
		esac
	done
}

echo "= 0"
if [ -n "$first" ]; then
	printf '%s' "$first" >"$t/first" && serve <"$t/first"
	first=
	rm -f "$t/first"
fi
serve
