# Builder of lab-system-path, the "sw" of every lab system: a few commands,
# $baseSize bytes of filler (zeros) for copy benchmarks, and the list of the
# basePaths store paths it references ($depsPath, when given).
set -eu
PATH=/usr/bin:/bin
mkdir -p "$out/bin" "$out/share/lab"

cat >"$out/bin/nixos-version" <<'SCRIPT'
#!/bin/sh
# Prints the version of the running lab system, like NixOS's nixos-version.
cat /run/current-system/nixos-version && echo
SCRIPT

cat >"$out/bin/lab-hello" <<'SCRIPT'
#!/bin/sh
echo "hello from $(cat /run/current-system/etc/hostname 2>/dev/null || echo an unknown lab host)"
SCRIPT

chmod 0555 "$out/bin/nixos-version" "$out/bin/lab-hello"
printf '%s\n' "$nixosVersion" >"$out/share/lab/version"
if [ "$baseSize" -gt 0 ]; then
	head -c "$baseSize" /dev/zero >"$out/share/lab/filler"
fi
if [ -n "${depsPath:-}" ]; then
	cp "$depsPath" "$out/share/lab/deps"
fi
