#!/bin/bash
here=$(cd "$(dirname "$0")" && pwd)
# usage: run.sh NAME REEL_BIN [extra reel-load args...]
name=$1; bin=$2; shift 2
cd "$here/../../.."
out=sim/results/cluster-cpu/$name
mkdir -p sim/results/cluster-cpu
LOADBIN=${LOADBIN:-${CC:-/tmp/cc}/bin/reel-load}
if [ "$#" -gt 0 ]; then
  while [ ! -x ${CC:-/tmp/cc}/bin/reel-load.new ]; do sleep 3; done
  LOADBIN=${CC:-/tmp/cc}/bin/reel-load.new
fi
echo "== $name $(date -u +%H:%M:%S) load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a ${CC:-/tmp/cc}/runs.log
"$here"/watch.sh $name &
$LOADBIN --netns --reel-bin "$bin" --sessions 60 --duration 40 --probe-streams 10 \
  --target reel,reel-cluster --out "$out" "$@" > ${CC:-/tmp/cc}/$name.stdout 2> ${CC:-/tmp/cc}/$name.stderr
rc=$?
echo "== $name rc=$rc $(date -u +%H:%M:%S) load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a ${CC:-/tmp/cc}/runs.log
grep -E "recorder CPU per session-second|sessions connected|ListFragments|close → GetMedia|reel-cluster/reel|sessions per node|target " "$out.txt" | grep -v "^    session" | tee -a ${CC:-/tmp/cc}/runs.log
