#!/usr/bin/env bash
# buf_lint.sh WORKDIR: `buf lint` of the public API (proto/, configured by
# proto/buf.yaml: STANDARD + COMMENTS minus the rules excepted there, each with
# its reason). buf comes from the npm package @bufbuild/buf, installed once
# under WORKDIR/npm (never in the source tree); SKIP (77) without node/npm or
# when the registry cannot be reached. Also proves the configuration bites: a
# copy of the API with one comment removed must fail.
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${1:-/tmp/ember-proto-lint}
# shellcheck source=../deploy/npm_deps.sh
. "$SRC/test/deploy/npm_deps.sh"
npm_deps "$WORK/npm" @bufbuild/buf
BUF="$WORK/npm/node_modules/.bin/buf"
"$BUF" --version >/dev/null 2>&1 || { echo "SKIP: buf from @bufbuild/buf does not run here"; exit 77; }

echo "buf $("$BUF" --version) lint proto/"
(cd "$SRC/proto" && "$BUF" lint)
echo "ok: proto/ is clean under buf lint"

# The lint must catch an undocumented field: strip one field comment in a copy.
copy="$WORK/proto-copy"
rm -rf "$copy" && cp -r "$SRC/proto" "$copy"
sed -i '0,/^  \/\/ Attach read-only\.$/{/^  \/\/ Attach read-only\.$/d}' "$copy/ember/v1/instance.proto"
if (cd "$copy" && "$BUF" lint >"$WORK/copy.out" 2>&1); then
  echo "FAIL: buf lint accepted a field without a comment (is ember/ excluded?)"
  exit 1
fi
grep -q 'read_only' "$WORK/copy.out" || { cat "$WORK/copy.out"; echo "FAIL: unexpected lint output"; exit 1; }
echo "ok: a field without a comment fails the lint"
