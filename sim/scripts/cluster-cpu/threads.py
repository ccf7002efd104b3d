#!/usr/bin/env python3
"""Per-thread-name CPU (utime+stime, ms) of reel processes over an interval.
usage: threads.py SECONDS  -> prints table grouped by process (node) and thread name."""
import os, sys, time, collections
def reel_pids():
    out = []
    for p in os.listdir('/proc'):
        if not p.isdigit(): continue
        try:
            cmd = open(f'/proc/{p}/cmdline','rb').read().split(b'\0')
        except OSError: continue
        if cmd and cmd[0].endswith(b'/reel') and b'serve' in cmd:
            node = 'single'
            if b'--node-id' in cmd: node = cmd[cmd.index(b'--node-id')+1].decode()
            out.append((int(p), node))
    return out
def snap(pids):
    tick = os.sysconf('SC_CLK_TCK'); d = {}
    for pid, node in pids:
        try: tids = os.listdir(f'/proc/{pid}/task')
        except OSError: continue
        for t in tids:
            try: st = open(f'/proc/{pid}/task/{t}/stat').read()
            except OSError: continue
            name = st[st.index('(')+1:st.rindex(')')]
            f = st[st.rindex(')')+2:].split()
            ms = (int(f[11]) + int(f[12])) * 1000 / tick
            d[(node, t)] = (name, ms)
    return d
secs = float(sys.argv[1]); pids = reel_pids()
a = snap(pids); time.sleep(secs); b = snap(pids)
agg = collections.defaultdict(float)
for k, (name, ms) in b.items():
    base = a.get(k, (name, 0.0))[1]
    import re
    agg[(k[0], re.sub(r'[-_]?\d+$', '', name))] += ms - base
tot = sum(agg.values())
print(f"pids {pids}; {secs}s; total {tot:.0f} ms = {tot/secs/10:.1f}% of a core")
for (node, name), ms in sorted(agg.items(), key=lambda x: -x[1]):
    if ms > 0: print(f"  {node:8} {name:24} {ms:8.0f} ms  {ms/tot*100:5.1f}%")
