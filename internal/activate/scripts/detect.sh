# shellcheck shell=sh
# Print "systemd" when the host runs systemd, else "plain".
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then echo systemd; else echo plain; fi
