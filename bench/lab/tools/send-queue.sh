#!/bin/bash
# What waits in the kernel below the daemons' piece connections, sampled while one lab case runs
# (the twenty-third pass of docs/BENCHMARKS.md). Needs root, like the lab. Start it, then the lab:
#
#   bench/lab/tools/send-queue.sh /tmp/sendq.txt 10 &
#   npm run lab -- --scenario P4 --runs 1 --baselines none --origin-mbit 100 --node-mbit 20
#
# Every 0.5 s, in each node host n1…nN of the lab's (first) namespace set: the Send-Q of every
# established TCP connection on the p2p port 4001 (bytes written by the daemon and not yet
# acknowledged by the peer: unsent plus in flight) and the backlog of the host's eth0 qdisc. It
# only reads (ss, tc); it stops when the lab's switch namespace is gone, after at most 1000
# samples, or after waiting 5 min for a lab to start; then prints medians and 90th percentiles.
set -u
OUT=${1:?usage: send-queue.sh OUT_FILE [NODES]}
N=${2:-10}
: > "$OUT"
SW=''
for _ in $(seq 1 600); do
  SW=$(ip netns list | awk '{print $1}' | grep -- '-sw$' | head -1)
  [ -n "$SW" ] && break
  sleep 0.5
done
[ -z "$SW" ] && { echo 'no lab namespaces appeared' >&2; exit 1; }
ID=${SW%-sw}
sleep 2
for _ in $(seq 1 1000); do
  ip netns list | grep -q "^$SW" || break
  t=$(date +%s.%N)
  for k in $(seq 1 "$N"); do
    ns=$ID-n$k
    q=$(ip netns exec "$ns" ss -tnH state established '( sport = :4001 or dport = :4001 )' 2>/dev/null | awk '{s=s" "$2} END{print s}')
    b=$(ip netns exec "$ns" tc -s qdisc show dev eth0 2>/dev/null | grep -o 'backlog [0-9]*b' | awk '{gsub("b","",$2); s+=$2} END{print s+0}')
    echo "$t n$k qdisc=$b sendq=$q" >> "$OUT"
  done
  sleep 0.5
done
# Percentiles of one column of numbers (stdin): median, 90th, max.
pcts() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) { print "none"; exit } printf "median %d, 90th percentile %d, max %d\n", a[int(.5 * (NR - 1)) + 1], a[int(.9 * (NR - 1)) + 1], a[NR] }'; }
echo "samples: $(wc -l < "$OUT") (host x time)"
echo "Send-Q per connection (bytes): $(awk '{ for (i = 4; i <= NF; i++) { v = $i; sub("sendq=", "", v); if (v != "") print v } }' "$OUT" | pcts)"
# Each sample's Send-Q summed over the host's connections.
hosts() { awk '{ t = 0; for (i = 4; i <= NF; i++) { v = $i; sub("sendq=", "", v); t += v } print t }' "$OUT"; }
echo "Send-Q per host, its connections together: $(hosts | pcts)"
echo "the same, in samples with anything queued: $(hosts | awk '$1 > 0' | pcts)"
echo "qdisc backlog per host: $(awk '{ v = $3; sub("qdisc=", "", v); print v }' "$OUT" | pcts)"
