#!/usr/bin/env bash
# check_systemd.sh UNIT [EMBERD]: `systemd-analyze verify` of the unit and its
# exposure score from `systemd-analyze security --offline`. verify needs the
# ExecStart binary to exist, so a copy of the unit points at EMBERD (default:
# /usr/bin/emberd, else /bin/true). SKIP (77) without systemd-analyze.
set -euo pipefail
UNIT=${1:?unit file}
BIN=${2:-/usr/bin/emberd}
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze not installed"; exit 77; }
[ -x "$BIN" ] || BIN=$(command -v true)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|^ExecStart=/usr/bin/emberd|ExecStart=$BIN|" "$UNIT" > "$tmp/emberd.service"
out=$(systemd-analyze verify "$tmp/emberd.service" 2>&1) || { echo "$out"; echo "FAIL: verify"; exit 1; }
if [ -n "$out" ]; then echo "$out"; echo "FAIL: verify printed warnings"; exit 1; fi
echo "ok   systemd-analyze verify: no warnings"
for key in "KillMode=process" "Type=simple" "Restart=on-failure" "DeviceAllow=/dev/kvm rw" \
           "DeviceAllow=/dev/net/tun rw" "CapabilityBoundingSet=CAP_NET_ADMIN" \
           "ProtectSystem=strict" "ReadWritePaths=/var/lib/ember"; do
  grep -qx "$key" "$UNIT" || { echo "FAIL: $key missing"; exit 1; }
done
echo "ok   KillMode=process, Type=simple, Restart=on-failure, /dev/kvm + TUN, CAP_NET_ADMIN only, ProtectSystem=strict"
# The threshold (exposure 0-10, lower is safer) guards against regressions.
if systemd-analyze security --help 2>/dev/null | grep -q -- --offline; then
  systemd-analyze security --offline=yes --threshold=35 "$tmp/emberd.service" | tail -1
fi
