# Sourced by scripts/demo, scripts/test and .ci/run: installs what skiff's
# demo and tests need on a fresh Debian machine, when it is missing.
# Needs root (apt-get). Go itself is expected at /usr/local/go or on PATH.
export PATH="/usr/local/go/bin:$PATH"
skiff_deps() {
	local need=()
	command -v nix >/dev/null 2>&1 || need+=(nix-bin)
	[ -x /usr/sbin/sshd ] || need+=(openssh-server)
	command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
	command -v sudo >/dev/null 2>&1 || need+=(sudo)
	command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
	command -v git >/dev/null 2>&1 || need+=(git)
	command -v iptables >/dev/null 2>&1 || need+=(iptables)
	if [ ${#need[@]} -gt 0 ]; then
		echo "installing ${need[*]}" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -q >&2
		apt-get install -y -q --no-install-recommends "${need[@]}" >&2
	fi
	if ! command -v go >/dev/null 2>&1; then
		echo "go is not installed: install Go 1.26 (https://go.dev/dl) at /usr/local/go" >&2
		return 1
	fi
}
