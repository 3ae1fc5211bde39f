#!/bin/sh
# driver_calls.sh: fails when agent code calls a driver operation anywhere but
# agent/vmm_call.c, the one boundary where availability, capability and a NULL
# op are checked (agent/vmm_call.h). A call is `->OP(` or `.OP(` with OP one of
# the vmm_driver operations (drivers/hypervisor.h), after comments and string
# literals are stripped. Usage: test/lint/driver_calls.sh [SOURCE_DIR]
set -eu
top=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$top"

# The operations of struct vmm_driver, read from the header so a new op is
# covered without editing this script.
ops=$(sed -n '/^typedef struct vmm_driver {/,/^} vmm_driver;/p' drivers/hypervisor.h |
      sed -nE 's/.*\(\*([a-z_]+)\)\(.*/\1/p' | paste -sd'|' -)
[ -n "$ops" ] || { echo "driver_calls: no operations found in drivers/hypervisor.h"; exit 1; }

strip() {
  sed -E -e 's://.*$::' -e 's:/\*.*\*/::g' -e 's/"([^"\\]|\\.)*"/""/g' "$1" |
    awk 'BEGIN{c=0} { line=$0; if (c) { if (index(line,"*/")) { line=substr(line,index(line,"*/")+2); c=0 } else { print ""; next } }
         if (index(line,"/*")) { line=substr(line,1,index(line,"/*")-1); c=1 } print line }'
}

bad=0
for f in $(find agent -name '*.c' -o -name '*.h' | sort); do
  [ "$f" = agent/vmm_call.c ] && continue
  hits=$(strip "$f" | grep -nE "(->|\.)[[:space:]]*($ops)[[:space:]]*\(" || true)
  # A driver op reached through a local function pointer: `= drv->adopt ?`.
  hits2=$(strip "$f" | grep -nE "(drv|driver)[[:space:]]*->[[:space:]]*($ops)([^a-z_]|$)" || true)
  if [ -n "$hits$hits2" ]; then
    printf '%s\n%s\n' "$hits" "$hits2" | sed '/^$/d' | sort -u | sed "s|^|$f:|"
    bad=1
  fi
done
if [ $bad -ne 0 ]; then
  echo "driver_calls: call driver operations through agent/vmm_call.h (one boundary)"
fi
exit $bad
