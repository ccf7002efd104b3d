#!/bin/bash
here=$(cd "$(dirname "$0")" && pwd)
# usage: watch.sh NAME : samples per-thread CPU of the single reel, then of the 3 cluster nodes
name=$1
out=${CC:-/tmp/cc}/$name.threads
: > $out
n_reel() { python3 - <<'P'
import os
n=0; c=0
for p in os.listdir('/proc'):
    if not p.isdigit(): continue
    try: cmd=open(f'/proc/{p}/cmdline','rb').read().split(b'\0')
    except OSError: continue
    if cmd and cmd[0].endswith(b'/reel') and b'serve' in cmd:
        if b'--node-id' in cmd: c+=1
        else: n+=1
print(n, c)
P
}
# single: wait for it, then 14 s (provision 6 s + ramp 6 s) later sample 20 s
for i in $(seq 1 600); do read s c < <(n_reel); [ "$s" = 1 ] && break; sleep 0.5; done
sleep 16; "$here"/threads.py 20 >> $out 2>&1
for i in $(seq 1 900); do read s c < <(n_reel); [ "$c" = 3 ] && break; sleep 0.5; done
sleep 22; "$here"/threads.py 20 >> $out 2>&1
