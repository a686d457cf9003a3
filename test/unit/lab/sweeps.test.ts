/**
 * The lab's sweeps without running the lab: which cases a sweep point runs, how their summaries stay
 * apart, and the sweep chart (Shoal and the baselines).
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { renderSummary, summarize } from '../../../bench/lab/report.js'
import { casesOf, DEFAULTS } from '../../../bench/lab/run.js'
import { sweepSvg } from '../../../bench/lab/svg.js'
import type { CaseSummary, LabOptions, RunResult, Scenario, System } from '../../../bench/lab/types.js'

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
