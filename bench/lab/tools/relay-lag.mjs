/**
 * How a warm seed's new pieces spread in a lab P4, from the daemons' debug logs of one case (the
 * twenty-sixth pass of docs/BENCHMARKS.md):
 *
 *   npm run lab -- --scenario P4 --runs 1 --baselines none --origin-mbit 100 --node-mbit 20 \
 *     --keep --log-level debug --out /tmp/p4
 *   node bench/lab/tools/relay-lag.mjs /tmp/shoal-shlab<id>/P4-shoal-n10-256m-r1 [WINDOW_MS]
 *
 * Prints, every WINDOW_MS (10 000) from the first piece any puller asked for: how many pieces the
 * seed (n1) had sent a first copy of, and how many each puller had received (the gap is what the
 * pullers still had to pass among themselves); then, per piece, the time from the seed taking it
 * up (its sending slot's start) to its first arrival at a puller and to its arrival at the last
 * puller. The hosts are network namespaces of one machine, so all logs are on one clock.
 */
import { readdirSync, readFileSync } from 'node:fs'

const dir = process.argv[2]
const windowMs = Number(process.argv[3] ?? 10_000)
if (dir === undefined || !(windowMs > 0)) {
  console.error('usage: node relay-lag.mjs LAB_CASE_DIR [WINDOW_MS]   (the n1, n2, … host dirs with shoal.log)')
  process.exit(2)
}
const hosts = readdirSync(dir)
  .filter((d) => /^n\d+$/.test(d))
  .sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)))
const records = {}
for (const h of hosts) {
  records[h] = readFileSync(`${dir}/${h}/shoal.log`, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"piece served"') || l.includes('"piece received"'))
    .map((l) => JSON.parse(l))
}
const pullers = hosts.filter((h) => h !== 'n1')
let t0 = Number.POSITIVE_INFINITY
for (const h of pullers) {
  for (const r of records[h]) if (r.msg === 'piece received') t0 = Math.min(t0, Date.parse(r.time) - r.ms)
}
if (!Number.isFinite(t0)) {
  console.error('no "piece received" lines: run the lab with --keep --log-level debug')
  process.exit(1)
}

// The seed's first copy of each piece: when its sending slot was taken.
const injected = new Map()
for (const r of records.n1 ?? []) {
  if (r.msg !== 'piece served') continue
  const key = `${r.digest}/${r.index}`
  const at = Date.parse(r.time) - r.confirmMs - r.sendMs - t0
  if (!injected.has(key) || injected.get(key) > at) injected.set(key, at)
}
const arrivals = new Map()
const received = {}
for (const h of pullers) {
  received[h] = []
  for (const r of records[h]) {
    if (r.msg !== 'piece received') continue
    const at = Date.parse(r.time) - t0
    received[h].push(at)
    const key = `${r.digest}/${r.index}`
    if (!arrivals.has(key)) arrivals.set(key, [])
    arrivals.get(key).push(at)
  }
}

const upTo = (times, t) => times.filter((x) => x <= t).length
const firsts = [...injected.values()]
const end = Math.max(...Object.values(received).flat())
const col = (x) => String(x).padStart(5)
console.log(`  t s  seed: first copies sent | pieces received by ${pullers.map(col).join('')}`)
for (let t = windowMs; t < end + windowMs; t += windowMs) {
  const row = pullers.map((h) => col(upTo(received[h], t))).join('')
  console.log(`${col(t / 1000)}  ${String(upTo(firsts, t)).padStart(23)} | ${' '.repeat(18)}${row}`)
}

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(q * (s.length - 1))]
}
const rows = []
for (const [key, at] of injected) {
  const got = arrivals.get(key)
  if (got === undefined) continue
  rows.push({ at, first: Math.min(...got) - at, last: Math.max(...got) - at, n: got.length })
}
rows.sort((a, b) => a.at - b.at)
const s = (ms) => (ms / 1000).toFixed(1)
console.log(
  `\n${rows.length} pieces injected by the seed, ${rows.filter((r) => r.n >= pullers.length).length} reached every puller`,
)
const spread = (what, key) => {
  const xs = rows.map((r) => r[key])
  console.log(`seed took it up → ${what}: median ${s(quantile(xs, 0.5))} s, 90th percentile ${s(quantile(xs, 0.9))} s`)
}
spread('first puller has it', 'first')
spread('last puller has it', 'last')
const tail = rows.slice(-20)
if (tail.length > 0) {
  console.log(
    `the last ${tail.length} taken up (${s(tail[0].at)}–${s(tail.at(-1).at)} s): every puller had them at ${s(Math.max(...tail.map((r) => r.at + r.last)))} s`,
  )
}
