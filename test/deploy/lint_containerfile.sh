#!/usr/bin/env bash
# lint_containerfile.sh WORKDIR: lints deploy/Containerfile with npm
# dockerfilelint (installed once under WORKDIR/npm, run offline).
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${1:-/tmp/ember-deploy-check}
# shellcheck source=npm_deps.sh
. "$SRC/test/deploy/npm_deps.sh"
npm_deps "$WORK/npm" dockerfilelint
exec "$WORK/npm/node_modules/.bin/dockerfilelint" "$SRC/deploy/Containerfile"
