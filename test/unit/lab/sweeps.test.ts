/**
 * The lab's sweeps without running the lab: which cases a sweep point runs, how their summaries stay
 * apart, the sweep chart (Shoal and the baselines), and lab:chart, which draws it from several
 * result files.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { mergeSweeps, readResult } from '../../../bench/lab/chart.js'
import { renderSummary, summarize } from '../../../bench/lab/report.js'
import { casesOf, DEFAULTS } from '../../../bench/lab/run.js'
import { sweepSvg } from '../../../bench/lab/svg.js'
import type { CaseSummary, LabOptions, LabResult, RunResult, Scenario, System } from '../../../bench/lab/types.js'

const MiB = 2 ** 20
const opts = (o: Partial<LabOptions> = {}): LabOptions => ({ ...DEFAULTS, outDir: '/nonexistent', ...o })
const systemsOf = (group: { system: System }[]): System[] => group.map((c) => c.system)

function runOf(scenario: Scenario, system: System, nodes: number, sizeMiB: number, run = 1): RunResult {
  // Link-bound shapes: (a) direct sends N images and takes ~N T*, (b) proxies ~2N.
  const k = system === 'shoal' ? 1 : system === 'direct' ? nodes : 2 * nodes
  const tStarS = (sizeMiB * MiB * 8) / 100e6
  return {
    scenario,
    system,
    run,
    nodes,
    pullers: nodes,
    imageBytes: sizeMiB * MiB,
    originMbit: 100,
    nodeMbit: 1000,
    tStarS,
    originBytes: k * 1.02 * sizeMiB * MiB,
    originRatio: k * 1.02,
    slowestMs: k * 1.4 * tStarS * 1000,
    slowestRatio: k * 1.4,
    medianMs: k * 1.2 * tStarS * 1000,
    wallMs: k * 1.5 * tStarS * 1000,
    ok: true,
    errors: [],
    nodeResults: [],
    originSeries: [],
    startedAt: '2025-01-01T00:00:00.000Z',
  }
}

/** Every tag opened is closed in order; no stray < or > outside tags; returns the tags. */
function wellFormed(svg: string): string[] {
  assert.equal((svg.match(/</g) ?? []).length, (svg.match(/>/g) ?? []).length, 'as many < as >')
  const tags = svg.match(/<[^<>]*>/g) ?? []
  const text = svg.replace(/<[^<>]*>/g, '')
  assert.ok(!/[<>]/.test(text), 'no < or > outside a tag')
  const stack: string[] = []
  for (const t of tags) {
    assert.match(t, /^<\/?[a-z]+(\s+[a-zA-Z][a-zA-Z0-9:-]*="[^"]*")*\s*\/?>$/, `a well-formed tag: ${t}`)
    const name = /^<\/?([a-z]+)/.exec(t)?.[1] as string
    if (t.startsWith('</')) assert.equal(stack.pop(), name, `</${name}> closes the open tag`)
    else if (!t.endsWith('/>')) stack.push(name)
  }
  assert.deepEqual(stack, [], 'every tag closed')
  assert.ok(svg.startsWith('<svg ') && svg.trimEnd().endsWith('</svg>'))
  assert.ok(!svg.includes('NaN') && !svg.includes('Infinity'), 'no NaN or Infinity in the coordinates')
  return tags
}

/** The series paths (markers are closed paths ending in Z; series are open polylines). */
const seriesPaths = (tags: string[]): string[] => tags.filter((t) => t.startsWith('<path ') && !/ Z"/.test(t))

describe('lab sweeps', () => {
  test('casesOf: each sweep point runs Shoal, direct and proxy by default, as P1 does', () => {
    const o = opts()
    assert.deepEqual(casesOf(o, 'P1').map(systemsOf), [['shoal', 'direct', 'proxy']])
    const size = casesOf(o, 'size-sweep')
    assert.equal(size.length, DEFAULTS.sweepSizesMiB.length)
    size.forEach((group, i) => {
      assert.deepEqual(systemsOf(group), ['shoal', 'direct', 'proxy'])
      for (const c of group) {
        assert.equal(c.sizeMiB, DEFAULTS.sweepSizesMiB[i])
        assert.equal(c.nodes, DEFAULTS.nodes)
        assert.equal(c.scenario, 'size-sweep')
      }
    })
    const nodes = casesOf(o, 'n-sweep')
    assert.equal(nodes.length, DEFAULTS.sweepNodes.length)
    nodes.forEach((group, i) => {
      assert.deepEqual(systemsOf(group), ['shoal', 'direct', 'proxy'])
      for (const c of group) {
        assert.equal(c.nodes, DEFAULTS.sweepNodes[i])
        assert.equal(c.sizeMiB, DEFAULTS.sizeMiB)
      }
    })
  })

  test('casesOf: --baselines none leaves Shoal alone in the sweeps; --sweep-baselines overrides', () => {
    const none = opts({ baselines: [] })
    for (const s of ['P1', 'size-sweep', 'n-sweep'] as Scenario[])
      for (const group of casesOf(none, s)) assert.deepEqual(systemsOf(group), ['shoal'])
    const direct = opts({ baselines: ['direct'] })
    for (const group of casesOf(direct, 'n-sweep')) assert.deepEqual(systemsOf(group), ['shoal', 'direct'])
    const sweepOnly = opts({ sweepBaselines: [] })
    assert.deepEqual(casesOf(sweepOnly, 'P1').map(systemsOf), [['shoal', 'direct', 'proxy']])
    for (const group of casesOf(sweepOnly, 'size-sweep')) assert.deepEqual(systemsOf(group), ['shoal'])
    // P3 and P4 stay Shoal only.
    assert.deepEqual(casesOf(opts(), 'P3').map(systemsOf), [['shoal']])
    assert.deepEqual(casesOf(opts(), 'P4').map(systemsOf), [['shoal']])
  })

  test('summarize keeps the systems of a sweep point apart; the table shows every row', () => {
    const runs: RunResult[] = []
    for (const n of [3, 10])
      for (const system of ['shoal', 'direct', 'proxy'] as System[])
        for (const run of [1, 2]) runs.push(runOf('n-sweep', system, n, 256, run))
    const summary = summarize(runs)
    assert.equal(summary.length, 6)
    const at = (system: System, n: number): CaseSummary | undefined =>
      summary.find((c) => c.system === system && c.nodes === n)
    assert.equal(at('shoal', 10)?.runs, 2)
    assert.equal(at('direct', 10)?.originRatio, 10 * 1.02)
    assert.equal(at('proxy', 3)?.originRatio, 6 * 1.02)
    assert.deepEqual(at('direct', 3)?.targets, [])
    assert.equal(at('shoal', 3)?.targets.length, 2)
    const table = renderSummary(summary)
    for (const label of ['n-sweep Shoal', 'n-sweep (a) direct', 'n-sweep (b) proxy'])
      assert.equal(table.split('\n').filter((l) => l.startsWith(`${label} `)).length, 2, `${label}:\n${table}`)
    assert.match(table, /n-sweep \(a\) direct\s+10\s.*10\.0× slower/)
  })

  const sweepSummaries = (systems: System[]): { size: CaseSummary[]; nodes: CaseSummary[] } => {
    const runs: RunResult[] = []
    for (const s of systems) {
      for (const mib of [64, 256, 1024]) runs.push(runOf('size-sweep', s, 10, mib))
      for (const n of [3, 5, 10, 20]) runs.push(runOf('n-sweep', s, n, 256))
    }
    const summary = summarize(runs)
    return {
      size: summary.filter((c) => c.scenario === 'size-sweep'),
      nodes: summary.filter((c) => c.scenario === 'n-sweep'),
    }
  }

  test('sweepSvg with the baselines: well-formed, two series per system and panel, log2 y axis', () => {
    const { size, nodes } = sweepSummaries(['shoal', 'direct', 'proxy'])
    const svg = sweepSvg(size, nodes)
    const tags = wellFormed(svg)
    const paths = seriesPaths(tags)
    assert.equal(paths.length, 2 * 3 * 2, '2 panels × 3 systems × 2 metrics')
    for (const p of paths) {
      const d = /d="([^"]*)"/.exec(p)?.[1] ?? ''
      assert.match(d, /^M[\d.]+,[\d.]+( L[\d.]+,[\d.]+)+$/, `a series with points: ${p}`)
    }
    const dashed = (dash: string): string[] => paths.filter((p) => p.includes(`stroke-dasharray="${dash}"`))
    assert.equal(dashed('6 4').length, 4, 'direct: dashed, both metrics, both panels')
    assert.equal(dashed('2 3').length, 4, 'proxy: dotted, both metrics, both panels')
    const solid = paths.filter((p) => !p.includes('stroke-dasharray'))
    assert.equal(solid.length, 4, 'Shoal: solid')
    for (const p of solid) assert.match(p, /stroke-width="2"/)
    for (const color of ['#1f5fbf', '#d2691e']) assert.equal(paths.filter((p) => p.includes(color)).length, 6)
    // Ratios up to 2 × 20 × 1.4 = 56: a log2 axis to 64, the targets kept, the legend below.
    for (const tick of ['0.5', '1', '2', '4', '8', '16', '32', '64']) assert.ok(svg.includes(`>${tick}</text>`), tick)
    assert.ok(svg.includes('ratio (log2 scale)'))
    assert.ok(svg.includes('target 1.3') && svg.includes('target 1.05'))
    for (const label of ['Shoal', '(a) direct', '(b) proxy per node', 'slowest node / T*', 'origin bytes / image'])
      assert.ok(svg.includes(`>${label}</text>`), label)
    // The n-sweep's points rise with N for the baselines: larger ratio, smaller y.
    const ys = (p: string): number[] => [...p.matchAll(/[ML][\d.]+,([\d.]+)/g)].map((m) => Number(m[1]))
    const proxyN = dashed('2 3').at(-1) as string
    const y = ys(proxyN)
    assert.equal(y.length, 4)
    for (let i = 1; i < y.length; i++) assert.ok((y[i] as number) < (y[i - 1] as number), `rising: ${y}`)
  })

  test('sweepSvg with Shoal only: no dashed series, linear y axis as before', () => {
    const { size, nodes } = sweepSummaries(['shoal'])
    const svg = sweepSvg(size, nodes)
    const paths = seriesPaths(wellFormed(svg))
    assert.equal(paths.length, 4)
    for (const p of paths) assert.ok(!p.includes('stroke-dasharray'), `solid: ${p}`)
    assert.ok(!svg.includes('log2 scale'))
    assert.ok(!svg.includes('(a) direct') && !svg.includes('(b) proxy'))
    assert.ok(svg.includes('target 1.3') && svg.includes('target 1.05'))
  })

  test('sweepSvg: one panel only, or nothing measured, is still a valid SVG', () => {
    const { nodes } = sweepSummaries(['shoal', 'direct'])
    const paths = seriesPaths(wellFormed(sweepSvg([], nodes)))
    assert.equal(paths.length, 4)
    assert.equal(paths.filter((p) => p.includes('stroke-dasharray="6 4"')).length, 2)
    wellFormed(sweepSvg([], []))
  })
})

/** A result file as a lab writes it, with the summary of the given runs. */
function labResult(startedAt: string, runs: RunResult[]): LabResult {
  return {
    version: 1,
    startedAt,
    finishedAt: startedAt,
    options: opts(),
    machine: { cpus: 2, loadavgStart: [0, 0, 0], loadavgEnd: [0, 0, 0], node: process.version, kernel: 'test' },
    engine: { head: 'test', srcDiff: 'clean' },
    runs,
    summary: summarize(runs),
    errors: [],
    pids: [],
    namespaces: [],
    files: {},
  }
}

const CHART = fileURLToPath(new URL('../../../bench/lab/chart.js', import.meta.url))

function chartCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CHART, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1
      resolve({ code, stdout, stderr })
    })
  })
}

describe('lab:chart, the sweep chart from several result files', () => {
  let dir = ''
  // Older lab: Shoal at every point and direct at the cheap ones. Newer lab: direct and proxy at the
  // cheap points (direct again at N=3 and at 64 MiB: these must come from the newer file).
  const OLD = '2026-12-01T10:00:00.000Z'
  const NEW = '2026-12-02T10:00:00.000Z'
  const older = labResult(OLD, [
    ...[64, 256, 1024].map((mib) => runOf('size-sweep', 'shoal', 10, mib)),
    ...[3, 5, 10, 20].map((n) => runOf('n-sweep', 'shoal', n, 256)),
    runOf('size-sweep', 'direct', 10, 64),
    runOf('n-sweep', 'direct', 3, 256),
    runOf('n-sweep', 'direct', 5, 256),
    runOf('P1', 'shoal', 10, 256),
  ])
  const newer = labResult(NEW, [
    { ...runOf('size-sweep', 'direct', 10, 64), originRatio: 9.5 },
    { ...runOf('n-sweep', 'direct', 3, 256), originRatio: 2.5 },
    runOf('n-sweep', 'proxy', 3, 256),
    runOf('size-sweep', 'proxy', 10, 64),
  ])
  const files = { older: '', newer: '' }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-lab-chart-'))
    files.older = join(dir, 'lab-older.json')
    files.newer = join(dir, 'lab-newer.json')
    await writeFile(files.older, `${JSON.stringify(older, null, 1)}\n`)
    await writeFile(files.newer, `${JSON.stringify(newer, null, 1)}\n`)
  })
  after(() => rm(dir, { recursive: true, force: true }))

  test('mergeSweeps: a case in both files comes from the newer, in either order; the others are all kept', async () => {
    const read = [await readResult(files.older), await readResult(files.newer)]
    for (const given of [read, [...read].reverse()]) {
      const m = mergeSweeps(given)
      const all = [...m.size, ...m.nodes]
      // older: 7 Shoal + 3 direct points (its P1 is the case of its own N=10, 256 MiB points, which win); newer: 4 points, 2 of them replacing older ones.
      assert.equal(all.length, 7 + 3 + 4 - 2)
      assert.ok(
        all.every((p) => p.summary.scenario === 'size-sweep' || p.summary.scenario === 'n-sweep'),
        'only the sweeps',
      )
      const at = (scenario: Scenario, system: System, nodes: number, mib: number) =>
        all.find(
          (p) =>
            p.summary.scenario === scenario &&
            p.summary.system === system &&
            p.summary.nodes === nodes &&
            p.summary.imageBytes === mib * MiB,
        )
      assert.equal(at('size-sweep', 'direct', 10, 64)?.file, files.newer)
      assert.equal(at('size-sweep', 'direct', 10, 64)?.summary.originRatio, 9.5)
      assert.equal(at('n-sweep', 'direct', 3, 256)?.file, files.newer)
      assert.equal(at('n-sweep', 'direct', 3, 256)?.summary.originRatio, 2.5)
      assert.equal(at('n-sweep', 'direct', 5, 256)?.file, files.older, 'only in the older file: kept')
      assert.equal(at('n-sweep', 'proxy', 3, 256)?.file, files.newer)
      for (const n of [3, 5, 10, 20]) assert.equal(at('n-sweep', 'shoal', n, 256)?.file, files.older)
      for (const mib of [64, 256, 1024]) assert.equal(at('size-sweep', 'shoal', 10, mib)?.file, files.older)
      const replaced = m.notes.filter((n) => n.includes(`kept ${files.newer}, the newer`))
      assert.equal(replaced.length, 2, m.notes.join('\n'))
      assert.ok(replaced.some((n) => n.startsWith('n-sweep direct N=3 256 MiB: ')))
      assert.ok(replaced.some((n) => n.startsWith('size-sweep direct N=10 64 MiB: ')))
      assert.equal(m.notes.length, 2, 'nothing else to say')
      // Sorted for drawing and printing: Shoal first, then by N.
      assert.deepEqual(
        m.nodes.filter((p) => p.summary.system === 'shoal').map((p) => p.summary.nodes),
        [3, 5, 10, 20],
      )
      assert.equal(m.nodes[0]?.summary.system, 'shoal')
    }
  })

  test('mergeSweeps: same startedAt, the file given last wins; mixed N in a size sweep is noted', () => {
    const a = labResult(OLD, [runOf('size-sweep', 'shoal', 10, 64)])
    const b = labResult(OLD, [{ ...runOf('size-sweep', 'shoal', 10, 64), originRatio: 1.5 }])
    const c = labResult(NEW, [runOf('size-sweep', 'shoal', 5, 256)])
    const m = mergeSweeps([
      { file: 'a.json', result: a },
      { file: 'b.json', result: b },
      { file: 'c.json', result: c },
    ])
    assert.equal(m.size.length, 2)
    assert.equal(m.size.find((p) => p.summary.nodes === 10)?.file, 'b.json')
    assert.ok(
      m.notes.some((n) => n.includes('kept b.json (same start, given last)')),
      m.notes.join('\n'),
    )
    assert.ok(
      m.notes.some((n) => n.startsWith('size-sweep N not the same at every point (10, 5)')),
      m.notes.join('\n'),
    )
  })

  test("mergeSweeps: each lab builds its own image, a few bytes apart: still one point, the newer lab's", () => {
    const older = labResult(OLD, [{ ...runOf('size-sweep', 'shoal', 10, 64), imageBytes: 64 * MiB + 481 }])
    const newer = labResult(NEW, [{ ...runOf('size-sweep', 'shoal', 10, 64), imageBytes: 64 * MiB + 497 }])
    const m = mergeSweeps([
      { file: 'newer.json', result: newer },
      { file: 'older.json', result: older },
    ])
    assert.equal(m.size.length, 1, 'one point')
    assert.equal(m.size[0]?.file, 'newer.json')
    assert.equal(m.notes.length, 1, m.notes.join('\n'))
  })

  test("mergeSweeps: a P1 case is the sweeps' common point, in both panels; a sweep point of a newer lab replaces it", () => {
    const baselines = labResult(OLD, [runOf('P1', 'direct', 10, 256), runOf('P1', 'shoal', 10, 256)])
    const sweeps = labResult(NEW, [runOf('n-sweep', 'shoal', 10, 256), runOf('n-sweep', 'shoal', 3, 256)])
    const m = mergeSweeps([
      { file: 'p1.json', result: baselines },
      { file: 'sweeps.json', result: sweeps },
    ])
    const direct = (ps: typeof m.size) => ps.filter((p) => p.summary.system === 'direct')
    assert.equal(direct(m.size).length, 1)
    assert.equal(direct(m.nodes).length, 1)
    assert.equal(direct(m.nodes)[0]?.summary.scenario, 'n-sweep')
    const shoalN10 = m.nodes.find((p) => p.summary.system === 'shoal' && p.summary.nodes === 10)
    assert.equal(shoalN10?.file, 'sweeps.json')
    assert.equal(m.size.find((p) => p.summary.system === 'shoal')?.file, 'p1.json')
  })

  test('the command writes a well-formed SVG of both files and lists every point with its file', async () => {
    const svgFile = join(dir, 'sweeps.svg')
    const r = await chartCli(['--out', svgFile, files.older, files.newer])
    assert.equal(r.code, 0, r.stderr)
    const svg = await readFile(svgFile, 'utf8')
    const paths = seriesPaths(wellFormed(svg))
    // size: Shoal, direct, proxy; N: Shoal, direct, proxy; two metrics each.
    assert.equal(paths.length, 2 * 3 * 2)
    for (const label of ['Shoal', '(a) direct', '(b) proxy per node']) assert.ok(svg.includes(`>${label}</text>`))
    const lines = r.stdout.trim().split('\n')
    assert.match(lines[0] ?? '', /^case\s+N\s+MiB\s+origin\/S\s+slowest\/T\*\s+file$/)
    const pointLines = lines.filter((l) => /^(size|n)-sweep /.test(l))
    assert.equal(pointLines.length, 12)
    assert.equal(pointLines.filter((l) => l.endsWith(files.newer)).length, 4)
    assert.ok(
      pointLines.some((l) => /^n-sweep direct\s+3\s+256\s+2\.50\s+4\.20\s+/.test(l)),
      r.stdout,
    )
    assert.match(lines.at(-1) ?? '', /^wrote .*sweeps\.svg: 12 sweep point\(s\) from 2 file\(s\)$/)
    assert.match(
      r.stderr,
      /n-sweep direct N=3 256 MiB: in .*lab-older\.json .* and .*lab-newer\.json .*; kept .*lab-newer\.json, the newer/,
    )
  })

  test('the command fails clearly: missing file, invalid JSON, no sweep points, no files', async () => {
    const svgFile = join(dir, 'never.svg')
    const missing = join(dir, 'nope.json')
    const r1 = await chartCli(['--out', svgFile, files.older, missing])
    assert.notEqual(r1.code, 0)
    assert.equal(r1.stderr.trim(), `cannot read ${missing}: no such file`)
    const bad = join(dir, 'bad.json')
    await writeFile(bad, '{"version": 1, "summary": [')
    const r2 = await chartCli(['--out', svgFile, bad])
    assert.notEqual(r2.code, 0)
    assert.match(r2.stderr, new RegExp(`^${bad.replace(/[.\\/]/g, '\\$&')}: not valid JSON`))
    const p3 = join(dir, 'p3.json')
    await writeFile(p3, JSON.stringify(labResult(OLD, [runOf('P3', 'shoal', 10, 256)])))
    const r3 = await chartCli(['--out', svgFile, p3])
    assert.notEqual(r3.code, 0)
    assert.match(r3.stderr, /no sweep points \(size-sweep, n-sweep or P1\) in /)
    const r4 = await chartCli(['--out', svgFile])
    assert.equal(r4.code, 2)
    assert.match(r4.stderr, /^no lab result files given/)
    await assert.rejects(readFile(svgFile), 'no SVG written on failure')
  })
})
