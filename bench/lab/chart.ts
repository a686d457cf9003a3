/**
 * npm run lab:chart -- --out <file.svg> <lab-result.json>...
 *
 * The sweep chart (as lab-sweeps.svg) from the summaries of several lab result files, for sweeps
 * run in more than one lab (e.g. Shoal at every point in one, the slow baselines at the cheap
 * points in another). A case (scenario, system, N, size) in more than one file is taken from the
 * newest file (its startedAt), and stderr says so.
 */
import { realpathSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { caseKey, grid } from './report.js'
import { sweepSvg } from './svg.js'
import type { CaseSummary, LabResult, Scenario, System } from './types.js'

const USAGE = `usage: npm run lab:chart -- --out <file.svg> <lab-result.json>...

  Draws the size and N sweeps from the summaries of the lab result files given (bench/results/
  lab-<time>.json); a case found in several files is taken from the newest (startedAt).`

const MiB = 2 ** 20

/**
 * A sweep point across labs: the image's nominal size, since each lab builds its own image and the
 * bytes differ a little (its config blob); the exact bytes kept one point per lab on the chart.
 */
function pointKey(c: CaseSummary): string {
  return caseKey({ ...c, imageBytes: Math.round(c.imageBytes / MiB) })
}
const SWEEPS: Scenario[] = ['size-sweep', 'n-sweep']
const SYSTEMS: System[] = ['shoal', 'direct', 'proxy']

/** A lab result and the file it was read from. */
export interface ResultFile {
  file: string
  result: LabResult
}

/** A sweep point to draw, and the file it comes from. */
export interface SweepPoint {
  summary: CaseSummary
  file: string
  startedAt: string
}

export interface MergedSweeps {
  /** Each sorted by system, then by size or N. */
  size: SweepPoint[]
  nodes: SweepPoint[]
  /** For stderr: cases found in several files (which one was kept), and what else looks amiss. */
  notes: string[]
}

const caseName = (c: CaseSummary): string =>
  `${c.scenario} ${c.system} N=${c.nodes} ${(c.imageBytes / MiB).toFixed(0)} MiB`

/**
 * The sweep summaries of every file, one per case: from the newest file (by startedAt) where a
 * case is in several, from the file given last where they started at the same time.
 */
export function mergeSweeps(files: ResultFile[]): MergedSweeps {
  const kept = new Map<string, SweepPoint>()
  const notes: string[] = []
  for (const { file, result } of files) {
    // P1 is the sweeps' common point (its N and size): drawn in both panels, so that a lab of P1
    // with the baselines gives the sweeps their N = 10, 256 MiB baselines.
    const own = result.summary.filter((c) => SWEEPS.includes(c.scenario))
    const ownKeys = new Set(own.map(caseKey))
    const sweeps = [
      ...own,
      ...result.summary
        .filter((c) => c.scenario === 'P1')
        .flatMap((c) => SWEEPS.map((scenario): CaseSummary => ({ ...c, scenario })))
        // The file's own sweep point for the same case wins over its P1.
        .filter((c) => !ownKeys.has(caseKey(c))),
    ]
    if (sweeps.length === 0) notes.push(`${file}: no sweep points`)
    for (const summary of sweeps) {
      const point: SweepPoint = { summary, file, startedAt: result.startedAt }
      const key = pointKey(summary)
      const old = kept.get(key)
      if (old === undefined) {
        kept.set(key, point)
        continue
      }
      const t = Date.parse(point.startedAt) - Date.parse(old.startedAt)
      const [win, lose] = t >= 0 ? [point, old] : [old, point]
      kept.set(key, win)
      notes.push(
        `${caseName(summary)}: in ${lose.file} (${lose.startedAt}) and ${win.file} (${win.startedAt}); ` +
          `kept ${win.file}${t === 0 ? ' (same start, given last)' : ', the newer'}`,
      )
    }
  }
  const points = [...kept.values()].sort(
    (a, b) =>
      SYSTEMS.indexOf(a.summary.system) - SYSTEMS.indexOf(b.summary.system) ||
      a.summary.imageBytes - b.summary.imageBytes ||
      a.summary.nodes - b.summary.nodes,
  )
  const size = points.filter((p) => p.summary.scenario === 'size-sweep')
  const nodes = points.filter((p) => p.summary.scenario === 'n-sweep')
  // One panel draws one line per system: points from labs that differ elsewhere would mix on it.
  const mixed = (what: string, values: (string | number)[]): void => {
    const distinct = [...new Set(values)]
    if (distinct.length > 1)
      notes.push(`${what} not the same at every point (${distinct.join(', ')}): drawn as one sweep`)
  }
  mixed(
    'size-sweep N',
    size.map((p) => p.summary.nodes),
  )
  mixed(
    'n-sweep image size (MiB)',
    nodes.map((p) => (p.summary.imageBytes / MiB).toFixed(0)),
  )
  const linksOf = new Map(files.map(({ file, result }) => [file, result.options]))
  mixed(
    'origin/node links (Mbit/s)',
    points.map((p) => {
      const o = linksOf.get(p.file)
      return `${o?.originMbit ?? '?'}/${o?.nodeMbit ?? '?'}`
    }),
  )
  return { size, nodes, notes }
}

const ratio = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? 'n/a' : v.toFixed(2))

/** One line per point drawn: the case, its two ratios, the file it comes from. */
export function renderPoints(points: SweepPoint[]): string {
  const rows = [
    ['case', 'N', 'MiB', 'origin/S', 'slowest/T*'],
    ...points.map(({ summary: c }) => [
      `${c.scenario} ${c.system}`,
      String(c.nodes),
      (c.imageBytes / MiB).toFixed(0),
      ratio(c.originRatio),
      ratio(c.slowestRatio),
    ]),
  ]
  const source = ['file', ...points.map((p) => p.file)]
  return grid(rows)
    .split('\n')
    .map((line, i) => `${line}  ${source[i]}`)
    .join('\n')
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err))

/** Reads one lab result file; the error names the file. */
export async function readResult(file: string): Promise<ResultFile> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new Error(`cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : message(err)}`)
  }
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${message(err)})`)
  }
  const r = data as Partial<LabResult> | null
  const valid =
    typeof r === 'object' &&
    r !== null &&
    r.version === 1 &&
    typeof r.startedAt === 'string' &&
    !Number.isNaN(Date.parse(r.startedAt)) &&
    Array.isArray(r.summary) &&
    r.summary.every(
      (c: Partial<CaseSummary> | null) =>
        typeof c?.scenario === 'string' &&
        typeof c.system === 'string' &&
        typeof c.nodes === 'number' &&
        typeof c.imageBytes === 'number',
    )
  if (!valid) throw new Error(`${file}: not a lab result (want version 1, a startedAt date and a summary list)`)
  return { file, result: r as LabResult }
}

export async function chartMain(argv: string[]): Promise<number> {
  const out = (s: string): boolean => process.stdout.write(`${s}\n`)
  const err = (s: string): boolean => process.stderr.write(`${s}\n`)
  let args: { values: { out?: string | undefined; help?: boolean | undefined }; positionals: string[] }
  try {
    args = parseArgs({
      args: argv,
      options: { out: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    })
  } catch (e) {
    err(`${message(e)}\n\n${USAGE}`)
    return 2
  }
  if (args.values.help === true) {
    out(USAGE)
    return 0
  }
  const svgFile = args.values.out
  if (svgFile === undefined || svgFile === '') {
    err(`--out <file.svg> is required\n\n${USAGE}`)
    return 2
  }
  if (args.positionals.length === 0) {
    err(`no lab result files given\n\n${USAGE}`)
    return 2
  }
  const files: ResultFile[] = []
  try {
    for (const file of args.positionals) files.push(await readResult(file))
  } catch (e) {
    err(message(e))
    return 1
  }
  const merged = mergeSweeps(files)
  for (const note of merged.notes) err(`[lab:chart] ${note}`)
  const points = [...merged.size, ...merged.nodes]
  if (points.length === 0) {
    err(`no sweep points (size-sweep, n-sweep or P1) in ${args.positionals.join(', ')}`)
    return 1
  }
  const svg = sweepSvg(
    merged.size.map((p) => p.summary),
    merged.nodes.map((p) => p.summary),
  )
  try {
    await writeFile(svgFile, svg)
  } catch (e) {
    err(`cannot write ${svgFile}: ${message(e)}`)
    return 1
  }
  out(renderPoints(points))
  out(`wrote ${svgFile}: ${points.length} sweep point(s) from ${files.length} file(s)`)
  return 0
}

/** Run as a command (not when imported, e.g. by the unit test). */
function invokedDirectly(): boolean {
  const script = process.argv[1]
  if (script === undefined) return false
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href
  } catch {
    return false
  }
}

if (invokedDirectly()) {
  chartMain(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code
    },
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
      process.exitCode = 1
    },
  )
}
