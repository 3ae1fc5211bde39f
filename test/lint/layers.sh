#!/bin/sh
# layers.sh: fails when a file includes a header of a layer above its own, so the
# folder tree stays the architecture (docs/architecture.md): common <- drivers
# <- agent core (manager, snapshots, records, vmm_call, types) <- agent/server
# and agent/ctl (which never include each other); agent/image and agent/net
# and agent/guestlink sit beside the core and use common only (guestlink also
# guest/agent_proto.h, the guest agent's wire format); guest/ is built for the guest and
# includes only guest/ (agent/image/bootcfg.c shares guest/bootcfg_format.h, the one wire
# format both sides read). Usage: test/lint/layers.sh [SOURCE_DIR]
set -eu
top=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$top"

# allowed include prefixes (project headers only) for files under each folder;
# the first matching folder wins.
allowed() {
  case "$1" in
    common/*) echo "common/" ;;
    drivers/*) echo "common/ drivers/" ;;
    guest/*) echo "guest/" ;;
    agent/image/*) echo "common/ agent/image/ guest/bootcfg_format.h" ;;
    agent/server/*) echo "common/ drivers/ agent/ ember/ google/ grpc/" ;;
    agent/ctl/*) echo "common/ agent/ctl/ agent/rpc_table.h agent/types.h ember/ google/ grpc/" ;;
    agent/main.c) echo "common/ drivers/ agent/ ember/" ;;
    agent/net/*) echo "common/ agent/net/" ;;
    agent/guestlink/*) echo "common/ agent/guestlink/ guest/agent_proto.h" ;;
    agent/*) echo "common/ drivers/ agent/types.h agent/rpc_table.h agent/net/ agent/instance_net.h agent/manager agent/record.h agent/snapshot.h agent/snapstore.h agent/validate.h agent/hostfiles.h agent/admission.h agent/idle.h agent/warm.h agent/datadir.h agent/console.h agent/vmm_call.h agent/config.h agent/metrics agent/image/ agent/instance_image.h agent/guestlink/" ;;
    *) echo "" ;;
  esac
}

bad=0
for f in $(git ls-files 'common/*' 'drivers/*' 'guest/*' 'agent/*' | grep -E '\.(c|h)$'); do
  ok=$(allowed "$f")
  # quoted includes that name a project folder (local includes like "error.h" are same-folder)
  for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\/[^"]*\)".*/\1/p' "$f"); do
    hit=0
    for p in $ok; do
      case "$inc" in "$p"*) hit=1; break ;; esac
    done
    if [ $hit -eq 0 ]; then
      echo "$f includes \"$inc\": not allowed from its layer (allowed: $ok)"
      bad=1
    fi
  done
done
[ $bad -eq 0 ] || { echo "layers: FAIL"; exit 1; }
echo "layers: every include stays in its layer or below"
