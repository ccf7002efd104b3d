#!/usr/bin/env bash
# Runs one fuzz target for SECONDS (one core, nice 19) and appends the run to fuzz/README.md:
#   fuzz/run-campaign.sh TARGET SECONDS [extra libFuzzer flags...]
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
set +e
start=$(date +%s)
nice -n 19 cargo +nightly fuzz run "${flags[@]}" "$target" "$corpus" "fuzz/seeds/$target" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$@" 2>"$log"
status=$?
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
row="| $(date -u +%Y-%m-%d) | \`$target\` | ${ran} s | ${execs:-?} | $files | $findings |"
echo "$row" | tee -a fuzz/README.md
exit "$status"
