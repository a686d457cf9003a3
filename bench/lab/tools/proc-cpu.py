#!/usr/bin/env python3
"""
CPU seconds per kind of process while one lab case's pulls run (the twenty-fifth pass of
docs/BENCHMARKS.md): Shoal daemons, skopeo, docker-registry, kernel threads, the rest. Needs root,
like the lab. Start the lab with its log in a file, then this with that file:

    npm run lab -- --scenario P1 --runs 1 --baselines none > /tmp/lab.log 2>&1 &
    python3 bench/lab/tools/proc-cpu.py /tmp/lab.log

It waits (at most 10 min) for the lab's "pulls, T* =" line, reads every process's CPU times from
/proc every 250 ms until the last skopeo client has exited (or the case's result line, at most
20 min), and prints the CPU each kind used in between (a process that exited counts up to its last
sample). It only reads.
"""
import os
import sys
import time

if len(sys.argv) != 2:
    sys.exit('usage: proc-cpu.py LAB_LOG')
log = sys.argv[1]
hz = os.sysconf('SC_CLK_TCK')


def text(path):
    try:
        with open(path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')
    except OSError:
        return ''


def kind(pid, comm):
    if comm in ('MainThread', 'node'):
        argv = text(f'/proc/{pid}/cmdline').split('\0')
        if 'daemon' in argv:
            return 'shoal daemon'
        script = next((a for a in argv[1:] if a.endswith('.js')), '?')
        return f'node {"/".join(script.split("/")[-2:])}'
    if comm.startswith(('kworker', 'ksoftirqd', 'kdamond', 'kswapd', 'rcu')):
        return 'kernel threads'
    return comm


def snapshot():
    out = {}
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        stat = text(f'/proc/{pid}/stat')
        if not stat:
            continue
        comm = stat[stat.find('(') + 1:stat.rfind(')')]
        fields = stat[stat.rfind(')') + 2:].split()
        out[pid] = (comm, int(fields[11]) + int(fields[12]))
    return out


for _ in range(2400):
    if 'pulls, T*' in text(log):
        break
    time.sleep(0.25)
else:
    sys.exit('no lab pulls started')
start = snapshot()
last = dict(start)
# Named while they run: a process's command line is gone once it exits.
kinds = {pid: kind(pid, comm) for pid, (comm, _) in start.items()}
t0 = time.time()
seen_client = False
for _ in range(4800):
    time.sleep(0.25)
    cur = snapshot()
    for pid, v in cur.items():
        last[pid] = v
        if pid not in kinds:
            kinds[pid] = kind(pid, v[0])
    # The pulls end with the last client: once skopeo was seen and none is left. The lab's
    # result line comes later (it checks every node's digests first), a bound if no skopeo runs.
    clients = sum(1 for comm, _ in cur.values() if comm == 'skopeo')
    seen_client = seen_client or clients > 0
    done = text(log)
    if (seen_client and clients == 0) or ': ok;' in done or 'FAILED' in done:
        break
wall = time.time() - t0
totals = {}
for pid, (comm, ticks) in last.items():
    base = start[pid][1] if pid in start and start[pid][0] == comm else 0
    k = kinds.get(pid) or kind(pid, comm)
    totals[k] = totals.get(k, 0) + (ticks - base) / hz
for k, v in sorted(totals.items(), key=lambda kv: -kv[1]):
    if v >= 0.05:
        print(f'{v:8.2f}  {k}')
print(f'{sum(totals.values()):8.2f}  all, over {wall:.1f} s of wall time')
