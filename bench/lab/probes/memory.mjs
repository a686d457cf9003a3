/**
 * A lab probe: what a daemon's memory is made of over time. Every 500 ms it records RSS, V8's
 * heap (total and used), the memory outside the heap that V8 knows of (Buffers and other
 * ArrayBuffers), its own minor page faults and the garbage collections since the last sample
 * (by kind, with their pause time), and writes them to $SHOAL_PROBE_DIR/memory-<pid>.json when
 * the daemon exits. Load it into every daemon of a lab, after `npm run build`:
 *
 *   SHOAL_PROBE_DIR=/tmp/probe SHOAL_LAB_NODE_ARGS="--import $PWD/bench/lab/probes/memory.mjs" \
 *     npm run lab -- --scenario P1 --runs 1 --baselines none
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { constants, PerformanceObserver } from 'node:perf_hooks'

const dir = process.env.SHOAL_PROBE_DIR ?? '/tmp/shoal-probe'
const MiB = 1024 * 1024
const kinds = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
}
let gcs = {}
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const k = kinds[e.detail?.kind] ?? 'other'
    gcs[k] ??= { n: 0, ms: 0 }
    const g = gcs[k]
    g.n++
    g.ms += e.duration
  }
}).observe({ entryTypes: ['gc'] })

const samples = []
const sample = () => {
  const m = process.memoryUsage()
  samples.push({
    at: Date.now(),
    rss: +(m.rss / MiB).toFixed(1),
    heapTotal: +(m.heapTotal / MiB).toFixed(1),
    heapUsed: +(m.heapUsed / MiB).toFixed(1),
    external: +(m.external / MiB).toFixed(1),
    arrayBuffers: +(m.arrayBuffers / MiB).toFixed(1),
    faults: process.resourceUsage().minorPageFault,
    gc: gcs,
  })
  gcs = {}
}
setInterval(sample, 500).unref()
sample()

const dump = () => {
  try {
    sample()
    mkdirSync(dir, { recursive: true })
    writeFileSync(`${dir}/memory-${process.pid}.json`, JSON.stringify({ samples }))
  } catch {
    // a probe never fails the daemon
  }
}
process.on('exit', dump)
