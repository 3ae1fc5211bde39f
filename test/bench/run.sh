#!/bin/sh
# test/bench/run.sh: run one of ember's benchmarks (or the KVM tiny-guest test)
# against a build tree, without going through cmake. See test/bench/README.md.
#
#   test/bench/run.sh qemu [--cycles N] [--scenarios reuse-256,reuse-1024,full-256]
#   test/bench/run.sh qemu-smoke            (2 cycles, reuse-256 + full-256)
#   test/bench/run.sh firecracker [--cycles N]       (EMBER_FIRECRACKER_BIN)
#   test/bench/run.sh firecracker-fake [--cycles N]  (contract fake: fake figures)
#   test/bench/run.sh kvm-tiny
#
# Build tree: EMBER_BUILD_DIR (default: ./build of the source tree). It must hold
# agent/emberd, python/ (target ember_proto_python) and guests/ (targets
# guest_tiny, guest_linux).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${EMBER_BUILD_DIR:-$src/build}
py=/usr/bin/python3

export EMBER_BUILD_DIR="$build"
export EMBERD_BIN="${EMBERD_BIN:-$build/agent/emberd}"
export EMBER_PYTHON_DIR="${EMBER_PYTHON_DIR:-$build/python}"
export EMBER_TEST_GUEST_DIR="${EMBER_TEST_GUEST_DIR:-$build/guests/linux}"
export EMBER_GUEST_TINY="${EMBER_GUEST_TINY:-$build/guests/tiny/tiny.elf}"

what=${1:-}
[ $# -gt 0 ] && shift
case "$what" in
  qemu) exec "$py" "$here/bench_qemu.py" "$@" ;;
  qemu-smoke) exec "$py" "$here/bench_qemu.py" --cycles 2 --scenarios reuse-256,full-256 \
                --dirty-mib 16 "$@" ;;
  firecracker) exec "$py" "$here/bench_firecracker.py" "$@" ;;
  firecracker-fake) exec "$py" "$here/bench_firecracker.py" --fake "$@" ;;
  kvm-tiny) exec "$py" "$here/test_qemu_kvm_tiny.py" "$@" ;;
  *)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2 ;;
esac
