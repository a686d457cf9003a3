/**
 * The lab's pictures, as plain SVG: every node's pull progress over time (one panel per system),
 * and the sweeps of P1 over image size and node count.
 */
import type { CaseSummary, RunResult } from './types.js'

interface Series {
  points: [number, number][]
  color: string
  dash?: string
  width?: number
  label?: string
}

interface Mark {
  at: number
  label: string
  color: string
  /** Label at the left end of a horizontal line (default: right). */
  left?: boolean
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
  yFormat?: (v: number) => string
  series: Series[]
  vlines?: Mark[]
  hlines?: Mark[]
  legend?: { label: string; color: string; dash?: string }[]
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

function niceStep(range: number, target: number): number {
  const raw = range / Math.max(1, target)
  const pow = 10 ** Math.floor(Math.log10(raw))
  for (const m of [1, 2, 2.5, 5, 10]) if (m * pow >= raw) return m * pow
  return 10 * pow
}

function panel(p: Panel): string {
  const m = { l: 56, r: 12, t: 28, b: 40 }
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
  const fy = (v: number): number => p.y + m.t + ih - (Math.min(v, p.yMax * 1.02) / p.yMax) * ih
  const out: string[] = []
  out.push(`<text x="${p.x + m.l}" y="${p.y + 18}" font-size="13" font-weight="bold">${esc(p.title)}</text>`)
  out.push(
    `<rect x="${p.x + m.l}" y="${p.y + m.t}" width="${iw}" height="${ih}" fill="#fff" stroke="#999" stroke-width="1"/>`,
  )
  const yStep = niceStep(p.yMax, 5)
  for (let v = 0; v <= p.yMax + 1e-9; v += yStep) {
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
    `<text x="${p.x + m.l + iw / 2}" y="${p.y + p.h - 6}" font-size="11" text-anchor="middle">${esc(p.xLabel)}</text>`,
  )
  out.push(
    `<text transform="translate(${p.x + 14},${p.y + m.t + ih / 2}) rotate(-90)" font-size="11" text-anchor="middle">${esc(p.yLabel)}</text>`,
  )
  for (const h of p.hlines ?? []) {
    const y = fy(h.at)
    out.push(
      `<line x1="${p.x + m.l}" x2="${p.x + m.l + iw}" y1="${y}" y2="${y}" stroke="${h.color}" stroke-dasharray="5,4"/>`,
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
      `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.width ?? 1.5}"${s.dash === undefined ? '' : ` stroke-dasharray="${s.dash}"`}/>`,
    )
    if (s.points.length <= 12) {
      for (const [x, y] of s.points)
        out.push(`<circle cx="${fx(x).toFixed(1)}" cy="${fy(y).toFixed(1)}" r="3" fill="${s.color}"/>`)
    }
  }
  let ly = p.y + m.t + ih - 8 - 14 * ((p.legend ?? []).length - 1)
  for (const l of p.legend ?? []) {
    const lx = p.x + m.l + iw - 150
    out.push(
      `<line x1="${lx}" x2="${lx + 18}" y1="${ly - 4}" y2="${ly - 4}" stroke="${l.color}" stroke-width="2"${l.dash === undefined ? '' : ` stroke-dasharray="${l.dash}"`}/>`,
    )
    out.push(`<text x="${lx + 22}" y="${ly}" font-size="10">${esc(l.label)}</text>`)
    ly += 14
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

/** The sweeps of P1 (Shoal): slowest/T* and origin bytes/image against size and node count. */
export function sweepSvg(size: CaseSummary[], nodes: CaseSummary[]): string {
  const panelW = 460
  const panelH = 300
  const body: string[] = []
  const legend = [
    { label: 'slowest node / T*', color: '#1f5fbf' },
    { label: 'origin bytes / image', color: '#d2691e' },
  ]
  const hlines = [
    { at: 1.3, label: 'target 1.3', color: '#1f5fbf' },
    { at: 1.05, label: 'target 1.05', color: '#d2691e', left: true },
  ]
  const yMaxOf = (xs: CaseSummary[]): number =>
    Math.max(2, ...xs.flatMap((c) => [c.slowestRatio ?? 0, c.originRatio ?? 0]).map((v) => Math.ceil(v * 2) / 2))
  let x = 10
  if (size.length > 0) {
    const pts = [...size].sort((a, b) => a.imageBytes - b.imageBytes)
    const mib = (c: CaseSummary): number => Math.round(c.imageBytes / 2 ** 20)
    body.push(
      panel({
        x,
        y: 44,
        w: panelW,
        h: panelH,
        title: `size sweep (N=${pts[0]?.nodes ?? '?'})`,
        xLabel: 'image size, MiB (log scale)',
        yLabel: 'ratio',
        xMin: mib(pts[0] as CaseSummary) * 0.8,
        xMax: mib(pts.at(-1) as CaseSummary) * 1.2,
        xLog2: true,
        xTicks: pts.map(mib),
        yMax: yMaxOf(pts),
        series: [
          {
            points: pts.filter((c) => c.slowestRatio !== undefined).map((c) => [mib(c), c.slowestRatio as number]),
            color: '#1f5fbf',
            width: 2,
          },
          {
            points: pts.filter((c) => c.originRatio !== undefined).map((c) => [mib(c), c.originRatio as number]),
            color: '#d2691e',
            width: 2,
          },
        ],
        hlines,
        legend,
      }),
    )
    x += panelW + 10
  }
  if (nodes.length > 0) {
    const pts = [...nodes].sort((a, b) => a.nodes - b.nodes)
    body.push(
      panel({
        x,
        y: 44,
        w: panelW,
        h: panelH,
        title: `node-count sweep (${Math.round((pts[0]?.imageBytes ?? 0) / 2 ** 20)} MiB)`,
        xLabel: 'nodes pulling at once',
        yLabel: 'ratio',
        xMin: 0,
        xMax: Math.max(...pts.map((c) => c.nodes)) + 1,
        xTicks: pts.map((c) => c.nodes),
        yMax: yMaxOf(pts),
        series: [
          {
            points: pts.filter((c) => c.slowestRatio !== undefined).map((c) => [c.nodes, c.slowestRatio as number]),
            color: '#1f5fbf',
            width: 2,
          },
          {
            points: pts.filter((c) => c.originRatio !== undefined).map((c) => [c.nodes, c.originRatio as number]),
            color: '#d2691e',
            width: 2,
          },
        ],
        hlines,
        legend,
      }),
    )
    x += panelW + 10
  }
  const first = size[0] ?? nodes[0]
  const sub =
    first === undefined ? '' : `origin and node links as in P1; dashed: the targets; each point the median of its runs`
  return doc(Math.max(x, 560), panelH + 54, 'Shoal, P1 sweeps: slowest node / T* and origin bytes / image', body, sub)
}
