#!/bin/bash
here=$(cd "$(dirname "$0")" && pwd)
while ! grep -q "^done" ${CC:-/tmp/cc}/after-build.log; do sleep 3; done
sleep 3
for i in 1 2 3; do
  for v in base after threads; do
    :
    case $v in
      base) "$here"/run.sh base-$i ${CC:-/tmp/cc}/base/reel ;;
      after) "$here"/run.sh after-$i ${CC:-/tmp/cc}/after/reel ;;
      threads) "$here"/run.sh after-threads1-$i ${CC:-/tmp/cc}/after/reel --cluster-node-threads 1 ;;
    esac
  done
done
