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
"$fuzzer" -max_total_time="$secs" -runs="$runs" -timeout=20 -rss_limit_mb=2048 \
  -print_final_stats=1 -dict="$(dirname "$0")/requests.dict" -artifact_prefix="$work/" \
  "$work/corpus" "$seeds" >"$log" 2>&1
rc=$?
tail -n 25 "$log"
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
nseeds=$(ls "$seeds" | wc -l)
nnew=$(ls "$work/corpus" | wc -l)
echo "fuzz_requests_smoke: exit $rc, ${execs:-?} executions, ${speed:-?} exec/s," \
     "corpus: $nseeds seeds + $nnew new inputs"
exit $rc
