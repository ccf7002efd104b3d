#!/usr/bin/env bash
# Runs one fuzz target until it has used SECONDS of CPU time (one core, nice 19, so it only takes
# what other work leaves idle) and appends the run to fuzz/README.md:
#   fuzz/run-campaign.sh TARGET SECONDS [extra libFuzzer flags...]
# The budget is CPU time, not wall time: the issue asks for CPU-hours, and a niced run on a busy
# machine gets far less CPU than its wall time. The row records both.
# Needs cargo-fuzz and a nightly toolchain. Corpus: fuzz/corpus/TARGET (local), seeded from
# fuzz/seeds/TARGET; crashes land in fuzz/artifacts/TARGET. Builds with -O (release),
# -a (debug assertions: overflow checks) and no sanitizer (reel forbids unsafe code; the
# findings sought are panics, overflows, hangs and blow-ups).
set -euo pipefail
target=${1:?usage: $0 TARGET SECONDS [libFuzzer flags]}
secs=${2:?usage: $0 TARGET SECONDS [libFuzzer flags]}
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
corpus=fuzz/corpus/$target
artifacts=fuzz/artifacts/$target
mkdir -p "$corpus" "$artifacts" fuzz/logs
log=fuzz/logs/$target-$(date -u +%Y%m%dT%H%M%SZ).log
before=$(ls "$artifacts" | wc -l)
flags=(-O -a -s none)
nice -n 19 cargo +nightly fuzz build "${flags[@]}" "$target"
bin=fuzz/target/x86_64-unknown-linux-gnu/release/$target
set +e
start=$(date +%s)
nice -n 19 "$bin" "$corpus" "fuzz/seeds/$target" \
    -max_total_time=$((secs * 100)) -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$@" 2>"$log" &
pid=$!
tick=$(getconf CLK_TCK)
cpu=0
while kill -0 "$pid" 2>/dev/null; do
    # utime + stime (fields 14, 15 of /proc/PID/stat; the name field has no spaces here)
    cpu=$(awk -v t="$tick" '{print int(($14 + $15) / t)}' /proc/$pid/stat 2>/dev/null || echo "$cpu")
    if [ "$cpu" -ge "$secs" ]; then kill -INT "$pid"; break; fi
    sleep 5
done
wait "$pid"
status=$?
[ "$status" -eq 72 ] && status=0 # libFuzzer's exit code after SIGINT: the budget was used up
ran=$(( $(date +%s) - start ))
set -e
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
if [ -z "$execs" ]; then # a crash ends the run before the final stats
    execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
fi
files=$(ls "$corpus" | wc -l)
after=$(ls "$artifacts" | wc -l)
if [ "$status" -eq 0 ] && [ "$after" -eq "$before" ]; then
    findings=none
else
    findings="exit $status; $((after - before)) new artifact(s) in $artifacts (see $log)"
fi
row="| $(date -u +%Y-%m-%d) | \`$target\` | ${cpu} s CPU (${ran} s wall) | ${execs:-?} | $files | $findings |"
echo "$row" | tee -a fuzz/README.md
exit "$status"
