#!/bin/sh
# banned_functions.sh: fails when C code of ember calls a banned function (the
# curl model: unbounded string building, non-reentrant or racy libc calls, and
# shell-outs). Usage: test/lint/banned_functions.sh [SOURCE_DIR]
#
# Everywhere (product, guest-side and test code): sprintf vsprintf strcpy
#   strcat strncat gets atoi atol atoll (no bounds / no error reporting:
#   use snprintf, cmn_asprintf, memcpy with a checked length, strtol).
# Product code (agent/ drivers/ common/ and guest-side code): additionally
#   strncpy (silent truncation, no NUL), strtok (hidden state), strerror
#   (shared buffer; cmn_strerror), localtime gmtime ctime asctime (static
#   results; the _r forms), tmpnam tempnam mktemp (races; mkstemp, mkdtemp),
#   system popen (a shell: run programs with cmn_proc_*), alloca, signal
#   (sigaction or sigwait).
set -eu
top=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$top"

everywhere='sprintf|vsprintf|strcpy|strcat|strncat|gets|atoi|atol|atoll'
product='strncpy|strtok|strerror|localtime|gmtime|ctime|asctime|tmpnam|tempnam|mktemp|system|popen|alloca|signal'

# Strips // and /* */ comments and string literals so words in prose never count.
strip() {
  sed -E -e 's://.*$::' -e 's:/\*.*\*/::g' -e 's/"([^"\\]|\\.)*"/""/g' "$1" |
    awk 'BEGIN{c=0} { line=$0; if (c) { if (index(line,"*/")) { line=substr(line,index(line,"*/")+2); c=0 } else { print ""; next } }
         if (index(line,"/*")) { line=substr(line,1,index(line,"/*")-1); c=1 } print line }'
}

bad=0
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.c' -o -name '*.h')
for f in $files; do
  case "$f" in
    agent/*|drivers/*|common/*|guest/*) pat="$everywhere|$product" ;;
    *) pat="$everywhere" ;;
  esac
  hits=$(strip "$f" | grep -nE "(^|[^A-Za-z0-9_.>])($pat)[[:space:]]*\(" || true)
  if [ -n "$hits" ]; then
    echo "$hits" | sed "s|^|$f:|"
    bad=1
  fi
done
if [ "$bad" -ne 0 ]; then
  echo "banned functions: FAIL (see the list at the top of $0 for what to use instead)"
  exit 1
fi
echo "banned functions: none in $(echo "$files" | wc -w) C files"
