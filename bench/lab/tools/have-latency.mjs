/**
 * How long a recipient's Have takes to reach the peer that sent it the piece, from the daemons'
 * debug logs of one lab case (the twenty-second pass of docs/BENCHMARKS.md):
 *
 *   npm run lab -- --scenario P4 --runs 1 --baselines none --origin-mbit 100 --node-mbit 20 \
 *     --keep --log-level debug --out /tmp/p4
 *   node bench/lab/tools/have-latency.mjs /tmp/shoal-shlab<id>/P4-shoal-n10-256m-r1
 *
 * The recipient logs "piece received" just after its Have went out; the sender logs "piece served"
 * when that Have came in (its `confirmMs` is how long the sending slot was held after the piece was
 * handed to the stream). The hosts of the lab are network namespaces of one machine, so the two
 * log times are on one clock. Node n1 is P4's warm seed.
 */
import { readdirSync, readFileSync } from 'node:fs'

const dir = process.argv[2]
if (dir === undefined) {
  console.error('usage: node have-latency.mjs LAB_CASE_DIR   (the n1, n2, … host dirs with shoal.log)')
  process.exit(2)
}
const hosts = readdirSync(dir).filter((n) => /^n\d+$/.test(n))
const idOf = new Map()
const served = []
const received = new Map()
for (const host of hosts) {
  for (const line of readFileSync(`${dir}/${host}/shoal.log`, 'utf8').split('\n')) {
    if (!line.startsWith('{')) continue
    let j
    try {
      j = JSON.parse(line)
    } catch {
      continue
    }
    const t = Date.parse(j.time)
    if (j.msg === 'swarm started') idOf.set(host, j.peerId)
    else if (j.msg === 'piece served')
      served.push({ host, to: j.peer, digest: j.digest, index: j.index, t, confirmMs: j.confirmMs })
    else if (j.msg === 'piece received') received.set(`${host}|${j.peer}|${j.digest}|${j.index}`, t)
  }
}
const hostOf = new Map([...idOf].map(([host, id]) => [id, host]))
const rows = []
for (const s of served) {
  const to = hostOf.get(s.to)
  const at = received.get(`${to}|${idOf.get(s.host)}|${s.digest}|${s.index}`)
  if (to === undefined || at === undefined) continue
  // Was the recipient itself sending a piece to this sender when its Have went out?
  const busy = served.some((x) => x.host === to && hostOf.get(x.to) === s.host && x.t - x.confirmMs <= at && at <= x.t)
  rows.push({ from: s.host, lat: s.t - at, confirmMs: s.confirmMs, busy })
}
const pct = (a, p) => {
  const s = [...a].sort((x, y) => x - y)
  return s[Math.floor(p * (s.length - 1))]
}
const percent = (n, of) => `${of === 0 ? 0 : Math.round((n / of) * 100)} %`
console.log(`pieces sent ${served.length}, matched with their recipient's line ${rows.length}`)
for (const [name, group] of [
  ['from the seed (n1)', rows.filter((r) => r.from === 'n1')],
  ['between the others', rows.filter((r) => r.from !== 'n1')],
]) {
  if (group.length === 0) continue
  const lat = group.map((r) => r.lat)
  const late = group.filter((r) => r.lat > 1000)
  const waited = group.reduce((a, r) => a + Math.max(0, r.lat), 0) / 1000
  const held = group.reduce((a, r) => a + r.confirmMs, 0) / 1000
  console.log(
    `${name}: ${group.length} pieces; Have latency median ${pct(lat, 0.5)} ms, 90th percentile ${pct(lat, 0.9)} ms; ` +
      `over 1 s ${percent(late.length, group.length)}, over 3 s ${percent(group.filter((r) => r.lat > 3000).length, group.length)}, ` +
      `over 6 s ${percent(group.filter((r) => r.lat > 6000).length, group.length)}; ` +
      `slot-seconds waiting for a Have ${waited.toFixed(0)} of ${held.toFixed(0)} held; ` +
      `late Haves sent while their sender was sending a piece to that peer: ${late.filter((r) => r.busy).length} of ${late.length}`,
  )
}
