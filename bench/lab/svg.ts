/**
 * The lab's pictures, as plain SVG: every node's pull progress over time (one panel per system),
 * and the sweeps of P1 over image size and node count.
 */
import type { CaseSummary, RunResult } from './types.js'

type Marker = 'circle' | 'square' | 'triangle'

interface Series {
  points: [number, number][]
  color: string
  dash?: string
  /** stroke-dashoffset: shifts a dashed line's dashes (two coinciding lines can show both colours). */
  dashOffset?: number
  width?: number
  label?: string
  /** Shape of the point markers (drawn for up to 12 points; default circle). */
  marker?: Marker
}

interface Mark {
  at: number
  label: string
  color: string
  /** Label at the left end of a horizontal line (default: right). */
  left?: boolean
  /** stroke-dasharray of the line (default 5,4). */
  dash?: string
}

interface Panel {
  x: number
  y: number
  w: number
  h: number
  title: string
  xLabel: string
  yLabel: string
  xMin?: number
  xMax: number
  yMax: number
  xLog2?: boolean
  xTicks?: number[]
  /** log2 y axis from yMin (default 0.5) to yMax, a grid line at each power of 2. */
  yLog2?: boolean
  yMin?: number
  yFormat?: (v: number) => string
  series: Series[]
  vlines?: Mark[]
  hlines?: Mark[]
  legend?: LegendEntry[]
  /** The legend inside the plot, bottom right (default), or in rows under the x axis label. */
  legendBelow?: boolean
}

interface LegendEntry {
  label: string
  color: string
  dash?: string
  marker?: Marker
  /** Below the plot: start a new row with this entry. */
  newRow?: boolean
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

function niceStep(range: number, target: number): number {
  const raw = range / Math.max(1, target)
  const pow = 10 ** Math.floor(Math.log10(raw))
  for (const m of [1, 2, 2.5, 5, 10]) if (m * pow >= raw) return m * pow
  return 10 * pow
}

const LEGEND_ROW = 14

function marker(shape: Marker | undefined, x: number, y: number, color: string): string {
  const f = (v: number): string => v.toFixed(1)
  if (shape === 'square') return `<rect x="${f(x - 3)}" y="${f(y - 3)}" width="6" height="6" fill="${color}"/>`
  if (shape === 'triangle')
    return `<path d="M${f(x)},${f(y - 4)} L${f(x + 3.5)},${f(y + 2.5)} L${f(x - 3.5)},${f(y + 2.5)} Z" fill="${color}"/>`
  return `<circle cx="${f(x)}" cy="${f(y)}" r="3" fill="${color}"/>`
}

const legendWidth = (l: LegendEntry): number => 30 + 6 * l.label.length

/** Legend entries left to right, in rows no wider than width (about 6 px per character). */
function legendRows(legend: LegendEntry[], width: number): LegendEntry[][] {
  const rows: LegendEntry[][] = []
  let used = 0
  for (const l of legend) {
    const row = rows.at(-1)
    if (row === undefined || l.newRow === true || (used > 0 && used + legendWidth(l) > width)) {
      rows.push([l])
      used = legendWidth(l)
    } else {
      row.push(l)
      used += legendWidth(l)
    }
  }
  return rows
}

function legendEntry(l: LegendEntry, x: number, y: number): string[] {
  return [
    `<line x1="${x}" x2="${x + 18}" y1="${y - 4}" y2="${y - 4}" stroke="${l.color}" stroke-width="2"${l.dash === undefined ? '' : ` stroke-dasharray="${l.dash}"`}/>`,
    ...(l.marker === undefined ? [] : [marker(l.marker, x + 9, y - 4, l.color)]),
    `<text x="${x + 22}" y="${y}" font-size="10">${esc(l.label)}</text>`,
  ]
}

function panel(p: Panel): string {
  const below = p.legendBelow === true ? legendRows(p.legend ?? [], p.w - 56 - 12) : []
  const m = { l: 56, r: 12, t: 28, b: 40 + LEGEND_ROW * below.length }
  const iw = p.w - m.l - m.r
  const ih = p.h - m.t - m.b
  const xMin = p.xMin ?? 0
  const fx = (v: number): number => {
    if (p.xLog2 === true) {
      const lo = Math.log2(xMin)
      const hi = Math.log2(p.xMax)
      return p.x + m.l + ((Math.log2(Math.max(v, xMin)) - lo) / (hi - lo || 1)) * iw
    }
    return p.x + m.l + ((v - xMin) / (p.xMax - xMin || 1)) * iw
  }
  const yMin = p.yMin ?? 0.5
  const fy = (v: number): number => {
    if (p.yLog2 === true) {
      const lo = Math.log2(yMin)
      const hi = Math.log2(p.yMax)
      const c = Math.log2(Math.min(Math.max(v, yMin), p.yMax * 1.02))
      return p.y + m.t + ih - ((c - lo) / (hi - lo || 1)) * ih
    }
    return p.y + m.t + ih - (Math.min(v, p.yMax * 1.02) / p.yMax) * ih
  }
  const out: string[] = []
  out.push(`<text x="${p.x + m.l}" y="${p.y + 18}" font-size="13" font-weight="bold">${esc(p.title)}</text>`)
  out.push(
    `<rect x="${p.x + m.l}" y="${p.y + m.t}" width="${iw}" height="${ih}" fill="#fff" stroke="#999" stroke-width="1"/>`,
  )
  const yTicks: number[] = []
  if (p.yLog2 === true) for (let v = yMin; v <= p.yMax * (1 + 1e-9); v *= 2) yTicks.push(v)
  else for (let v = 0, step = niceStep(p.yMax, 5); v <= p.yMax + 1e-9; v += step) yTicks.push(v)
  for (const v of yTicks) {
    const y = fy(v)
    out.push(`<line x1="${p.x + m.l}" x2="${p.x + m.l + iw}" y1="${y}" y2="${y}" stroke="#eee"/>`)
    const label = p.yFormat === undefined ? String(Number(v.toFixed(3))) : p.yFormat(v)
    out.push(`<text x="${p.x + m.l - 4}" y="${y + 4}" font-size="10" text-anchor="end">${esc(label)}</text>`)
  }
  const xTicks =
    p.xTicks ??
    (() => {
      const step = niceStep(p.xMax - xMin, 6)
      const ticks: number[] = []
      for (let v = xMin; v <= p.xMax + 1e-9; v += step) ticks.push(v)
      return ticks
    })()
  for (const v of xTicks) {
    const x = fx(v)
    out.push(`<line x1="${x}" x2="${x}" y1="${p.y + m.t}" y2="${p.y + m.t + ih}" stroke="#eee"/>`)
    out.push(
      `<text x="${x}" y="${p.y + m.t + ih + 14}" font-size="10" text-anchor="middle">${esc(String(Number(v.toFixed(2))))}</text>`,
    )
  }
  out.push(
    `<text x="${p.x + m.l + iw / 2}" y="${p.y + m.t + ih + 34}" font-size="11" text-anchor="middle">${esc(p.xLabel)}</text>`,
  )
  out.push(
    `<text transform="translate(${p.x + 14},${p.y + m.t + ih / 2}) rotate(-90)" font-size="11" text-anchor="middle">${esc(p.yLabel)}</text>`,
  )
  for (const h of p.hlines ?? []) {
    const y = fy(h.at)
    out.push(
      `<line x1="${p.x + m.l}" x2="${p.x + m.l + iw}" y1="${y}" y2="${y}" stroke="${h.color}" stroke-dasharray="${h.dash ?? '5,4'}"/>`,
    )
    const lx = h.left === true ? p.x + m.l + 4 : p.x + m.l + iw - 4
    out.push(
      `<text x="${lx}" y="${y - 3}" font-size="10" text-anchor="${h.left === true ? 'start' : 'end'}" fill="${h.color}">${esc(h.label)}</text>`,
    )
  }
  for (const v of p.vlines ?? []) {
    if (v.at > p.xMax) continue
    const x = fx(v.at)
    out.push(
      `<line x1="${x}" x2="${x}" y1="${p.y + m.t}" y2="${p.y + m.t + ih}" stroke="${v.color}" stroke-dasharray="5,4"/>`,
    )
    out.push(`<text x="${x + 3}" y="${p.y + m.t + 12}" font-size="10" fill="${v.color}">${esc(v.label)}</text>`)
  }
  for (const s of p.series) {
    if (s.points.length === 0) continue
    const d = s.points.map(([x, y], i) => `${i === 0 ? 'M' : 'L'}${fx(x).toFixed(1)},${fy(y).toFixed(1)}`).join(' ')
    out.push(
      `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.width ?? 1.5}"${s.dash === undefined ? '' : ` stroke-dasharray="${s.dash}"`}${s.dashOffset === undefined ? '' : ` stroke-dashoffset="${s.dashOffset}"`}/>`,
    )
    if (s.points.length <= 12) for (const [x, y] of s.points) out.push(marker(s.marker, fx(x), fy(y), s.color))
  }
  if (p.legendBelow === true) {
    below.forEach((row, i) => {
      let lx = p.x + m.l
      for (const l of row) {
        out.push(...legendEntry(l, lx, p.y + m.t + ih + 34 + LEGEND_ROW * (i + 1)))
        lx += legendWidth(l)
      }
    })
  } else {
    let ly = p.y + m.t + ih - 8 - LEGEND_ROW * ((p.legend ?? []).length - 1)
    for (const l of p.legend ?? []) {
      out.push(...legendEntry(l, p.x + m.l + iw - 150, ly))
      ly += LEGEND_ROW
    }
  }
  return out.join('\n')
}

function doc(w: number, h: number, title: string, body: string[], subtitle = ''): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif">`,
    `<rect width="${w}" height="${h}" fill="#fafafa"/>`,
    `<text x="12" y="20" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<text x="12" y="38" font-size="12">${esc(subtitle)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n')
}

const SHORT: Record<RunResult['system'], string> = { shoal: 'Shoal', direct: '(a) direct', proxy: '(b) proxy per node' }

export function nodeColor(i: number, n: number): string {
  return `hsl(${Math.round((360 * i) / Math.max(1, n))},70%,42%)`
}

/**
 * Progress of every node's pull (fraction of the image in the client's output) over time, one
 * panel per system, for the given runs of one scenario. Dashed verticals: T* and 1.3 × T*.
 */
export function progressSvg(title: string, runs: RunResult[]): string {
  const panelW = 460
  const panelH = 300
  const body: string[] = []
  runs.forEach((r, i) => {
    const maxMs = Math.max(
      r.tStarS * 1300,
      ...r.nodeResults.flatMap((n) => n.progress.map(([t]) => t)),
      ...r.nodeResults.map((n) => n.endMs ?? 0),
    )
    const xMax = maxMs / 1000
    const series: Series[] = r.nodeResults
      .filter((n) => n.role !== 'seed')
      .map((n) => {
        const pts = n.progress.map(([t, f]) => [t / 1000, f] as [number, number])
        if (n.endMs !== undefined && n.ok) pts.push([n.endMs / 1000, 1])
        pts.sort((a, b) => a[0] - b[0])
        const s: Series = { points: pts, color: nodeColor(n.node - 1, r.nodes) }
        if (n.role === 'killed') s.dash = '3,3'
        return s
      })
    const slow = r.slowestMs === undefined ? 'n/a' : `${(r.slowestMs / 1000).toFixed(1)} s`
    body.push(
      panel({
        x: 10 + i * (panelW + 10),
        y: 44,
        w: panelW,
        h: panelH,
        title: `${SHORT[r.system]}: slowest ${slow}, origin ${r.originRatio.toFixed(2)}× image`,
        xLabel: 'seconds since the first pull started',
        yLabel: 'fraction of the image received',
        xMax,
        yMax: 1,
        series,
        vlines: [
          { at: r.tStarS, label: 'T*', color: '#555' },
          { at: 1.3 * r.tStarS, label: '1.3 T*', color: '#c00' },
          ...(r.killedAtMs === undefined ? [] : [{ at: r.killedAtMs / 1000, label: 'kill', color: '#a0a' }]),
        ],
      }),
    )
  })
  const first = runs[0]
  const sub =
    first === undefined
      ? ''
      : `N=${first.nodes}, ${(first.imageBytes / 2 ** 20).toFixed(0)} MiB, origin ${first.originMbit} Mbit/s, nodes ${first.nodeMbit} Mbit/s; one line per node (dashed: killed)`
  return doc(Math.max(560, 10 + runs.length * (panelW + 10)), panelH + 54, title, body, sub)
}

const SLOWEST = '#1f5fbf'
const ORIGIN = '#d2691e'
const TARGET_DASH = '8,3,2,3'
const SYSTEMS: RunResult['system'][] = ['shoal', 'direct', 'proxy']
/** Line style of each system in the sweeps (the colour is the metric's). */
const SWEEP_STYLE: Record<RunResult['system'], { width: number; dash?: string; marker: Marker }> = {
  shoal: { width: 2, marker: 'circle' },
  direct: { width: 2, dash: '6 4', marker: 'square' },
  proxy: { width: 2, dash: '2 3', marker: 'triangle' },
}

/** Linear y axis up to the largest ratio (at least 2), or log2 (0.5, 1, 2, 4, …) when it is over 8. */
function sweepY(cases: CaseSummary[]): Pick<Panel, 'yMax' | 'yMin' | 'yLog2'> {
  const values = cases
    .flatMap((c) => [c.slowestRatio, c.originRatio])
    .filter((v): v is number => v !== undefined && Number.isFinite(v))
  if (Math.max(0, ...values) <= 8) return { yMax: Math.max(2, ...values.map((v) => Math.ceil(v * 2) / 2)) }
  const low = Math.min(0.5, ...values.filter((v) => v > 0))
  return {
    yLog2: true,
    yMin: Math.max(2 ** -6, 2 ** Math.floor(Math.log2(low))),
    yMax: 2 ** Math.ceil(Math.log2(Math.max(...values))),
  }
}

/**
 * Per system: slowest/T* (blue) and origin bytes/image (orange) against x; Shoal drawn last, on top.
 * A baseline's two ratios are both about N (direct) or 2N (proxy), so its lines often coincide: the
 * orange dashes are shifted by half a period, between the blue ones, so that both stay visible.
 */
function sweepSeries(cases: CaseSummary[], x: (c: CaseSummary) => number): Series[] {
  const out: Series[] = []
  for (const system of [...SYSTEMS].reverse()) {
    const pts = cases.filter((c) => c.system === system).sort((a, b) => x(a) - x(b))
    if (pts.length === 0) continue
    const style = SWEEP_STYLE[system]
    const period = (style.dash ?? '').split(/[ ,]+/).reduce((a, v) => a + (Number(v) || 0), 0)
    const line = (color: string, label: string, value: (c: CaseSummary) => number | undefined): Series => ({
      ...style,
      ...(color === ORIGIN && period > 0 ? { dashOffset: period / 2 } : {}),
      color,
      label: `${SHORT[system]}: ${label}`,
      points: pts.flatMap((c): [number, number][] => {
        const v = value(c)
        return v === undefined || !Number.isFinite(v) ? [] : [[x(c), v]]
      }),
    })
    out.push(line(SLOWEST, 'slowest node / T*', (c) => c.slowestRatio))
    out.push(line(ORIGIN, 'origin bytes / image', (c) => c.originRatio))
  }
  return out
}

/**
 * The sweeps of P1, Shoal and the baselines run beside it: slowest/T* and origin bytes/image against
 * size and node count. One colour per metric, one line style per system.
 */
export function sweepSvg(size: CaseSummary[], nodes: CaseSummary[]): string {
  const systems = SYSTEMS.filter((s) => [...size, ...nodes].some((c) => c.system === s))
  const legend: LegendEntry[] = [
    { label: 'slowest node / T*', color: SLOWEST },
    { label: 'origin bytes / image', color: ORIGIN },
    ...systems.map((s, i) => ({
      label: SHORT[s],
      color: '#444',
      marker: SWEEP_STYLE[s].marker,
      newRow: i === 0,
      ...(SWEEP_STYLE[s].dash === undefined ? {} : { dash: SWEEP_STYLE[s].dash }),
    })),
  ]
  const panelW = 460
  const panelH = 300 + LEGEND_ROW * legendRows(legend, panelW - 56 - 12).length
  const body: string[] = []
  const hlines = [
    { at: 1.3, label: 'target 1.3', color: SLOWEST, dash: TARGET_DASH },
    { at: 1.05, label: 'target 1.05', color: ORIGIN, dash: TARGET_DASH, left: true },
  ]
  let log = false
  const yOf = (cases: CaseSummary[]): ReturnType<typeof sweepY> & { yLabel: string } => {
    const y = sweepY(cases)
    log ||= y.yLog2 === true
    return { ...y, yLabel: y.yLog2 === true ? 'ratio (log2 scale)' : 'ratio' }
  }
  let x = 10
  if (size.length > 0) {
    const mib = (c: CaseSummary): number => Math.round(c.imageBytes / 2 ** 20)
    const ticks = [...new Set(size.map(mib))].sort((a, b) => a - b)
    body.push(
      panel({
        x,
        y: 44,
        w: panelW,
        h: panelH,
        title: `size sweep (N=${size[0]?.nodes ?? '?'})`,
        xLabel: 'image size, MiB (log scale)',
        xMin: (ticks[0] as number) * 0.8,
        xMax: (ticks.at(-1) as number) * 1.2,
        xLog2: true,
        xTicks: ticks,
        ...yOf(size),
        series: sweepSeries(size, mib),
        hlines,
        legend,
        legendBelow: true,
      }),
    )
    x += panelW + 10
  }
  if (nodes.length > 0) {
    const ticks = [...new Set(nodes.map((c) => c.nodes))].sort((a, b) => a - b)
    body.push(
      panel({
        x,
        y: 44,
        w: panelW,
        h: panelH,
        title: `node-count sweep (${Math.round((nodes[0]?.imageBytes ?? 0) / 2 ** 20)} MiB)`,
        xLabel: 'nodes pulling at once',
        xMin: 0,
        xMax: (ticks.at(-1) as number) + 1,
        xTicks: ticks,
        ...yOf(nodes),
        series: sweepSeries(nodes, (c) => c.nodes),
        hlines,
        legend,
        legendBelow: true,
      }),
    )
    x += panelW + 10
  }
  const title =
    systems.length > 1
      ? 'P1 sweeps, Shoal and the baselines: slowest node / T* and origin bytes / image'
      : 'Shoal, P1 sweeps: slowest node / T* and origin bytes / image'
  const sub =
    systems.length === 0
      ? ''
      : `origin and node links as in P1; dash-dot: the targets; each point the median of its runs${log ? '; y log2 where a ratio is over 8' : ''}`
  return doc(Math.max(x, 560), panelH + 54, title, body, sub)
}
