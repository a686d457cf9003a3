import { MIB } from './client.js'
import { renderP2p } from './p2p-report.js'
import { median } from './phases.js'
import { layout } from './table.js'
import type { BenchResult, ColdSide, HitSide, MemResult } from './types.js'

type Cell = number | undefined

function fmt(x: Cell, digits: number): string {
  return x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(digits)
}

function ratio(a: Cell, b: Cell): Cell {
  return a === undefined || b === undefined || b === 0 ? undefined : a / b
}

function check(ok: boolean | undefined): string {
  return ok === undefined ? '' : ok ? '  ok' : '  MISSED'
}

function peak(...mems: (MemResult | undefined)[]): Cell {
  const xs = mems.filter((m): m is MemResult => m !== undefined).map((m) => m.hwmMiB)
  return xs.length === 0 ? undefined : Math.max(...xs)
}

/** The table of results, Shoal and docker-registry side by side. Nothing is asserted. */
export function renderTable(r: BenchResult): string {
  const rows: string[][] = [['', 'Shoal', 'docker-registry', 'shoal/registry', 'target']]
  const notes: string[] = []
  const row = (name: string, s: Cell, g: Cell, digits: number, target = '', ratioDigits = 2): void => {
    rows.push([name, fmt(s, digits), fmt(g, digits), fmt(ratio(s, g), ratioDigits), target])
  }
  const errs = (label: string, side: HitSide | ColdSide): void => {
    if (side.error !== undefined) notes.push(`${label}: ERROR ${side.error}`)
  }

  const hit = r.hit
  if (hit !== undefined) {
    const n = Math.max(hit.shoal.runs.length, hit.registry.runs.length)
    const s = hit.shoal.medianMiBps
    const g = hit.registry.medianMiBps
    const met = s === undefined || g === undefined ? undefined : s / g >= 1.0
    row(`1 cache hit ${hit.blobBytes / MIB} MiB, MiB/s (median of ${n})`, s, g, 0, `ratio ≥ 1.0${check(met)}`)
    rows.push([
      '    each run, MiB/s',
      hit.shoal.runs.map((x) => x.mibPerSec.toFixed(0)).join(' ') || '-',
      hit.registry.runs.map((x) => x.mibPerSec.toFixed(0)).join(' ') || '-',
      '',
      '',
    ])
    rows.push([
      '    first pull (Shoal: fill from origin)',
      fmt(hit.shoal.warm?.mibPerSec, 0),
      fmt(hit.registry.warm?.mibPerSec, 0),
      '',
      '',
    ])
    const sources = hit.shoal.runs.map((x) => x.source ?? '-')
    if (sources.some((x) => x !== 'cache'))
      notes.push(`cache hit: X-Shoal-Source of the measured runs: ${sources.join(', ')}`)
    if (hit.shoal.warm !== undefined && hit.shoal.warm.source !== 'origin') {
      notes.push(`cache hit: X-Shoal-Source of Shoal's first pull was ${hit.shoal.warm.source ?? '(none)'}, not origin`)
    }
    errs('cache hit, Shoal', hit.shoal)
    errs('cache hit, docker-registry', hit.registry)
  }

  const cold = r.cold
  if (cold !== undefined) {
    const s = cold.shoal
    const g = cold.registry
    const met = s.originRatio === undefined ? undefined : s.originRatio < 1.1
    row(
      `2 cold ${cold.blobBytes / MIB} MiB × ${cold.clients}: origin bytes / blob`,
      s.originRatio,
      g.originRatio,
      2,
      `shoal ≈ 1.0${check(met)}`,
    )
    row(
      `2 cold: wall time, all ${cold.clients} clients${cold.hashed ? ' (sha256)' : ''}, s`,
      ms(s.wallMs),
      ms(g.wallMs),
      2,
      'lower is better',
    )
    row('    origin link busy (first request → last byte), s', ms(s.originBusyMs), ms(g.originBusyMs), 2, '', 2)
    row('    origin connections', s.originConnections, g.originConnections, 0, '', 2)
    row('    time to first byte, median, s', ms(medianTtfb(s)), ms(medianTtfb(g)), 3, '', 2)
    row('    time to first byte, max, s', ms(maxTtfb(s)), ms(maxTtfb(g)), 3, '', 2)
    rows.push(['    X-Shoal-Source', formatSources(s.sources), '', '', ''])
    for (const [label, side] of [
      ['Shoal', s],
      ['docker-registry', g],
    ] as const) {
      if (side.settled === false)
        notes.push(`cold, ${label}: the origin link was still busy 60 s after the clients finished`)
      if (
        side.originBytes !== undefined &&
        side.originBytesAtEnd !== undefined &&
        side.originBytes - side.originBytesAtEnd > MIB
      ) {
        notes.push(
          `cold, ${label}: ${((side.originBytes - side.originBytesAtEnd) / MIB).toFixed(0)} MiB came from the origin after the last client finished`,
        )
      }
    }
    errs('cold, Shoal', s)
    errs('cold, docker-registry', g)
  }

  const hitS = hit?.shoal.mem
  const hitG = hit?.registry.mem
  const coldS = cold?.shoal.mem
  const coldG = cold?.registry.mem
  if (hit !== undefined) {
    row('3 peak RSS (VmHWM), cache hit, MiB', hitS?.hwmMiB, hitG?.hwmMiB, 0, under200(hitS?.hwmMiB), 1)
    row('    max sampled VmRSS, MiB', hitS?.maxSampledRssMiB, hitG?.maxSampledRssMiB, 0, '', 1)
    row('    VmRSS when ready (idle), MiB', hitS?.startRssMiB, hitG?.startRssMiB, 0, '', 1)
    row('    max VmRSS during first pull, MiB', hit?.shoal.warmMaxRssMiB, hit?.registry.warmMaxRssMiB, 0, '', 1)
    row('    max VmRSS during measured runs, MiB', hit?.shoal.runsMaxRssMiB, hit?.registry.runsMaxRssMiB, 0, '', 1)
  }
  if (cold !== undefined) {
    row('3 peak RSS (VmHWM), cold, MiB', coldS?.hwmMiB, coldG?.hwmMiB, 0, under200(coldS?.hwmMiB), 1)
    row('    max sampled VmRSS, MiB', coldS?.maxSampledRssMiB, coldG?.maxSampledRssMiB, 0, '', 1)
    row('    VmRSS when ready (idle), MiB', coldS?.startRssMiB, coldG?.startRssMiB, 0, '', 1)
  }
  if (hit !== undefined && cold !== undefined) {
    const s = peak(hitS, coldS)
    row('3 peak RSS, both tests, MiB', s, peak(hitG, coldG), 0, under200(s), 1)
  }
  for (const e of r.errors) notes.push(`ERROR ${e}`)

  const lines = rows.length > 1 ? layout(rows) : []
  const p2p = r.p2p === undefined ? [] : renderP2p(r.p2p)
  if (lines.length > 0 && p2p.length > 0) lines.push('')
  lines.push(...p2p)
  const head = [
    `Shoal benchmark ${r.startedAt} (${r.durationS.toFixed(0)} s): ${r.env.node}, ${r.env.cpus} CPUs, ` +
      `${r.env.registry}, shoal ${r.env.commit}, load average ${r.env.loadavgAtStart} → ${r.env.loadavgAtEnd}`,
  ]
  if (Number(r.env.loadavgAtStart) > 0.5) {
    head.push('note: the machine was not idle when the run started (1-min load average above 0.5): expect noise')
  }
  head.push('')
  return [...head, ...lines, ...(notes.length > 0 ? ['', ...notes] : [])].join('\n')
}

function ttfbs(side: ColdSide): number[] {
  return side.clients.map((c) => c.ttfbMs).filter((x): x is number => x !== undefined)
}

function medianTtfb(side: ColdSide): number | undefined {
  return median(ttfbs(side))
}

function maxTtfb(side: ColdSide): number | undefined {
  const xs = ttfbs(side)
  return xs.length === 0 ? undefined : Math.max(...xs)
}

function ms(x: number | undefined): number | undefined {
  return x === undefined ? undefined : x / 1000
}

function under200(x: number | undefined): string {
  return `shoal ≤ 200${check(x === undefined ? undefined : x <= 200)}`
}

function formatSources(s: Record<string, number>): string {
  const parts = Object.entries(s).map(([k, v]) => `${k}:${v}`)
  return parts.length === 0 ? '-' : parts.join(' ')
}
