#!/usr/bin/env bash
# validate_manifests.sh WORKDIR: validates deploy/kubernetes offline with npm
# kubernetes-models + yaml, installed once under WORKDIR/npm (never in the
# source tree). SKIP (77) without node/npm or when the packages cannot be
# installed.
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${1:-/tmp/ember-deploy-check}
# shellcheck source=npm_deps.sh
. "$SRC/test/deploy/npm_deps.sh"
npm_deps "$WORK/npm" kubernetes-models yaml
NODE_PATH="$WORK/npm/node_modules" exec node "$SRC/test/deploy/validate_manifests.js" "$SRC/deploy/kubernetes"
