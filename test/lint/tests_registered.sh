#!/bin/sh
# tests_registered.sh: fails when a test source file is registered nowhere, so
# a test can never be dropped silently. A test source is test/**/test_*.c or
# test/**/test_*.py; it counts as registered when its file name or its stem
# (test_x, the name ember_unit_test() and friends take) appears as a word in a
# cmake file of the source tree (*.cmake, CMakeLists.txt). Helpers and fixtures
# (emberd_fixture.py, testvm_driver.c, bench_*.py, fakes/) are not named test_*
# and are not checked.
# Usage: test/lint/tests_registered.sh [SOURCE_DIR [BINARY_DIR]]
# BINARY_DIR (skipped in the search: its generated cmake files name every
# registered test) defaults to SOURCE_DIR/build.
set -eu
top=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${2:-$top/build}
cd "$top"
bin=$(cd "$bin" 2>/dev/null && pwd || echo "$bin")

cmakes=$(find . \( -name .git -o -name node_modules \) -prune -o \
              -type d -exec test -e '{}/CMakeCache.txt' ';' -prune -o \
              \( -name '*.cmake' -o -name CMakeLists.txt \) -type f -print |
         while read -r f; do
           case "$(cd "$(dirname "$f")" && pwd)/" in "$bin"/*) continue ;; esac
           echo "$f"
         done)
[ -n "$cmakes" ] || { echo "tests_registered: no cmake files under $top"; exit 1; }

bad=0
n=0
for f in $(find test \( -name 'test_*.c' -o -name 'test_*.py' \) -type f | sort); do
  n=$((n + 1))
  b=$(basename "$f")
  s=${b%.*}
  # shellcheck disable=SC2086
  if ! grep -q -w -e "$s" -e "$b" $cmakes; then
    echo "$f: not registered in any cmake fragment (test/CMakeLists.txt lists them)"
    bad=1
  fi
done
echo "tests_registered: $n test sources checked"
exit $bad
