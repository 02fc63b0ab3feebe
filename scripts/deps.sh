# shellcheck shell=bash
# Sourced by scripts/demo, scripts/test and .ci/run: installs what skiff's
# demo and tests need on a fresh Debian machine, when it is missing.
# Needs root (apt-get). Go itself is expected at /usr/local/go or on PATH.
export PATH="/usr/local/go/bin:$PATH"
skiff_deps() {
	local need=()
	# nix-setup-systemd (recommended by nix-bin) makes the nixbld build
	# users and /etc/nix/nix.conf; install it too.
	command -v nix >/dev/null 2>&1 || need+=(nix-bin nix-setup-systemd)
	[ -x /usr/sbin/sshd ] || need+=(openssh-server)
	command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
	command -v sudo >/dev/null 2>&1 || need+=(sudo)
	command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
	command -v git >/dev/null 2>&1 || need+=(git)
	command -v iptables >/dev/null 2>&1 || need+=(iptables)
	# The binary cache fan-out test serves a cache with nginx (not started as a service).
	[ -x /usr/sbin/nginx ] || need+=(nginx-light)
	# The systemd test hosts (internal/lab/nspawn).
	[ -x /usr/bin/systemd-nspawn ] || need+=(systemd-container)
	[ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
	# scripts/test checks scripts/* and the host-side scripts with it.
	command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
	if [ ${#need[@]} -gt 0 ]; then
		echo "installing ${need[*]}" >&2
		export DEBIAN_FRONTEND=noninteractive
		# Installing openssh-server must not start the machine's own sshd:
		# it would hold port 22 of every address, where lab hosts listen.
		local policy=""
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod 755 /usr/sbin/policy-rc.d
			policy=/usr/sbin/policy-rc.d
		fi
		apt-get update -q >&2
		local rc=0
		apt-get install -y -q "${need[@]}" >&2 || rc=$?
		[ -n "$policy" ] && rm -f "$policy"
		[ "$rc" -eq 0 ] || return "$rc"
	fi
	if ! command -v go >/dev/null 2>&1; then
		echo "go is not installed: install Go 1.26 (https://go.dev/dl) at /usr/local/go" >&2
		return 1
	fi
}
