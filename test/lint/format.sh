#!/bin/sh
# format.sh: fails when a tracked C file differs from what clang-format makes of
# it with the repository's .clang-format. Fix with:
#   git ls-files '*.c' '*.h' | xargs clang-format -i
# Usage: test/lint/format.sh [SOURCE_DIR]. SKIP (77) without clang-format.
set -eu
top=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$top"
cf=$(command -v clang-format || command -v clang-format-14 || true)
[ -n "$cf" ] || { echo "SKIP: clang-format not installed (Debian package clang-format)"; exit 77; }
bad=0
for f in $(git ls-files '*.c' '*.h'); do
  if ! "$cf" --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "$f: not formatted ($cf -i $f)"
    bad=1
  fi
done
[ $bad -eq 0 ] || { echo "format: FAIL"; exit 1; }
echo "format: every C file follows .clang-format ($($cf --version | head -1))"
