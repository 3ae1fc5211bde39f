#!/bin/sh
# run_smoke.sh: the bounded libFuzzer run of ctest fuzz_requests_smoke.
# Usage: run_smoke.sh FUZZER SEED_CORPUS WORK_DIR SECONDS MAX_RUNS
# New inputs go to WORK_DIR/corpus (the seed folder stays as committed);
# a crashing input is kept as WORK_DIR/crash-* and the test fails.
set -u
fuzzer=$1 seeds=$2 work=$3 secs=$4 runs=$5
rm -rf "$work"
mkdir -p "$work/corpus"
log=$work/fuzz.log
# -print_funcs=0: no NEW_FUNC lines, so the sanitizer does not spawn
# llvm-symbolizer children in the middle of the harness's process checks.
"$fuzzer" -max_total_time="$secs" -runs="$runs" -timeout=20 -rss_limit_mb=2048 -print_funcs=0 \
  -print_final_stats=1 -dict="$(dirname "$0")/requests.dict" -artifact_prefix="$work/" \
  "$work/corpus" "$seeds" >"$log" 2>&1
rc=$?
# After a crash the fixture could not stop its testvm shells nor remove its
# temp root: do it here (only the roots this run printed).
if [ "$rc" -ne 0 ]; then
  for root in $(sed -n 's/^fuzz_requests: fixture root //p' "$log" | sort -u); do
    case $root in /tmp/ember-fuzz-*) ;; *) continue ;; esac
    for p in /proc/[0-9]*; do
      if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q "$root/"; then
        kill -9 "${p#/proc/}" 2>/dev/null
      fi
    done
    rm -rf "$root"
  done
fi
tail -n 25 "$log"
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
nseeds=$(ls "$seeds" | wc -l)
nnew=$(ls "$work/corpus" | wc -l)
echo "fuzz_requests_smoke: exit $rc, ${execs:-?} executions, ${speed:-?} exec/s," \
     "corpus: $nseeds seeds + $nnew new inputs"
exit $rc
