#!/bin/sh
# quickstart.sh: from a fresh Debian 12 machine to a running guest in one command.
#
# Installs the Debian packages ember needs, builds emberd and emberctl into
# build/, builds the small Linux test guest (a Debian kernel + busybox initramfs,
# test/guests/linux), starts emberd with its defaults (a local data folder, a
# unix socket, QEMU) in the background, and boots a guest named "demo" through
# the gRPC API. It ends by printing how to standby and restore that guest with
# emberctl and with grpcurl. Stop everything with: deploy/quickstart.sh --stop
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=$top/build
ctl=$build/agent/emberctl
emberd=$build/agent/emberd

# emberd's default data dir (EMBER_DATA_DIR picks another: the test of this
# script uses a folder of its own).
if [ -n "${EMBER_DATA_DIR:-}" ]; then data=$EMBER_DATA_DIR
elif [ "$(id -u)" = 0 ]; then data=/var/lib/ember; else data=${XDG_DATA_HOME:-$HOME/.local/share}/ember; fi
sock=$data/emberd.sock
export EMBER_SOCKET="unix:$sock"

if [ "${1:-}" = "--stop" ]; then
  "$ctl" delete demo >/dev/null 2>&1 || true
  [ -f "$data/emberd.pid" ] && kill "$(cat "$data/emberd.pid")" 2>/dev/null || true
  echo "emberd stopped; the demo guest deleted"
  exit 0
fi

[ "${EMBER_SKIP_DEPS:-0}" = 1 ] || EMBER_DEPS_MINIMAL=1 "$top/test/install-deps.sh"
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target emberd emberctl guest_linux

mkdir -p "$data"
if ! "$ctl" health >/dev/null 2>&1; then
  # Own session: emberd keeps running after this script (and its terminal) ends.
  setsid "$emberd" --data-dir "$data" >>"$data/emberd.log" 2>&1 < /dev/null &
  echo $! >"$data/emberd.pid"
  i=0
  until "$ctl" health >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "emberd did not start; see $data/emberd.log" >&2; exit 1; }
    sleep 0.1
  done
fi
echo "emberd is serving on unix:$sock (log: $data/emberd.log)"

guest=$build/guests/linux
tsc=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
"$ctl" delete demo >/dev/null 2>&1 || true
"$ctl" create demo --hypervisor qemu --vcpus 1 --memory-mib 256 \
  --kernel "$guest/vmlinux" --initrd "$guest/initramfs.cpio.gz" \
  --cmdline "console=ttyS0 panic=-1 quiet tsc_early_khz=${tsc:-2000000}" --start
console=$("$ctl" get demo --json | sed -n 's/.*"consoleLogPath":[[:space:]]*"\([^"]*\)".*/\1/p')
i=0
until grep -q EMBER-GUEST-READY "$console" 2>/dev/null; do
  i=$((i + 1))
  [ $i -lt 1200 ] || { echo "guest did not boot; see $console" >&2; exit 1; }
  sleep 0.1
done
"$ctl" get demo
cat <<MSG

The guest "demo" is running (console: $console).

Standby and restore it with emberctl:
  $ctl standby demo
  $ctl restore demo
  $ctl watch            # events with timings, in another terminal

Or with grpcurl (no .proto needed: emberd serves reflection):
  grpcurl -plaintext -unix $sock list
  grpcurl -plaintext -unix -d '{"id":"demo"}' $sock ember.v1.InstanceService/StandbyInstance
  grpcurl -plaintext -unix -d '{"id":"demo"}' $sock ember.v1.InstanceService/RestoreInstance

Stop emberd and delete the guest: $0 --stop
MSG
