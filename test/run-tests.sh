#!/bin/sh
# run-tests.sh: configures, builds (warnings are errors) and runs every test of
# ember with ctest. Usage: test/run-tests.sh [BUILD_DIR] [extra cmake args...]
# Environment: CTEST_ARGS (extra ctest arguments, e.g. "-L unit"),
# EMBER_SKIP_GUESTS=1 (do not build the test guests), EMBER_SKIP_DEPS=1 (do not
# install Debian packages first; by default test/install-deps.sh runs, so this
# one command works on a fresh Debian 12 machine).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
[ $# -gt 0 ] && shift
jobs=$(nproc 2>/dev/null || echo 2)

[ "${EMBER_SKIP_DEPS:-0}" = 1 ] || "$top/test/install-deps.sh"

cmake -S "$top" -B "$build" -DEMBER_WERROR=ON "$@"
cmake --build "$build" -j "$jobs"
if [ "${EMBER_SKIP_GUESTS:-0}" != 1 ]; then
  cmake --build "$build" --target guest_linux guest_tiny bootkit
fi
# shellcheck disable=SC2086
ctest --test-dir "$build" --output-on-failure --timeout 1200 ${CTEST_ARGS:-}
