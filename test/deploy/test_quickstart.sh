#!/bin/sh
# test_quickstart.sh: runs the README's first command, deploy/quickstart.sh, as a
# newcomer would (packages already installed by the test run: EMBER_SKIP_DEPS=1),
# on a data dir of its own, and checks what it promises: emberd serving, a guest
# "demo" booted and Running, the printed commands; then `quickstart.sh --stop`
# ends emberd and deletes the guest. SKIP (77) without QEMU.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
command -v qemu-system-x86_64 >/dev/null 2>&1 || { echo "SKIP: qemu-system-x86_64 not installed"; exit 77; }
work=$(mktemp -d /tmp/ember-quickstart-XXXXXX)
data=$work/data
ctl=$top/build/agent/emberctl
export EMBER_SKIP_DEPS=1 EMBER_DATA_DIR="$data" EMBER_SOCKET="unix:$data/emberd.sock"
fail() { echo "FAIL: $*"; sed -n '1,200p' "$work/out" 2>/dev/null; tail -20 "$data/emberd.log" 2>/dev/null; exit 1; }
cleanup() {
  "$top/deploy/quickstart.sh" --stop >/dev/null 2>&1 || true
  [ -f "$data/emberd.pid" ] && kill -9 "$(cat "$data/emberd.pid")" 2>/dev/null || true
  pkill -9 -f "$data/" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$top/deploy/quickstart.sh" >"$work/out" 2>&1 || fail "quickstart.sh exited $?"
grep -q 'The guest "demo" is running' "$work/out" || fail "no 'demo is running' line"
grep -q "emberd is serving on unix:$data/emberd.sock" "$work/out" || fail "no serving line"
state=$("$ctl" get demo --json | sed -n 's/.*"state":[[:space:]]*"\([^"]*\)".*/\1/p')
[ "$state" = "INSTANCE_STATE_RUNNING" ] || fail "demo is $state, not Running"
grep -q "$ctl standby demo" "$work/out" || fail "the printed standby command is missing"
"$ctl" standby demo >/dev/null || fail "the printed standby command failed"
"$ctl" restore demo >/dev/null || fail "the printed restore command failed"
echo "ok    quickstart: emberd serving, demo Running, printed standby/restore work"

"$top/deploy/quickstart.sh" --stop >"$work/stop" 2>&1 || fail "quickstart.sh --stop exited $?"
pid=$(cat "$data/emberd.pid")
i=0
while kill -0 "$pid" 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 300 ] || fail "emberd (pid $pid) still runs after --stop"; sleep 0.1
done
[ -z "$(ls "$data/instances" 2>/dev/null)" ] || fail "instance folders left after --stop"
echo "ok    quickstart --stop: emberd ended, demo deleted"
echo "2 passed, 0 failed"
