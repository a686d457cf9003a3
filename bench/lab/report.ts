/** The lab's summary (median of the runs of each case) and its tables, printed as ratios. */
import { type CaseSummary, type RunResult, SYSTEM_LABEL, type System } from './types.js'

const MiB = 2 ** 20

export function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] : ((s[m - 1] as number) + (s[m] as number)) / 2
}

/** Cases are keyed by scenario, system, N and size. */
export function caseKey(r: { scenario: string; system: string; nodes: number; imageBytes: number }): string {
  return `${r.scenario}|${r.system}|${r.nodes}|${r.imageBytes}`
}

export function summarize(runs: RunResult[]): CaseSummary[] {
  const groups = new Map<string, RunResult[]>()
  for (const r of runs) {
    const k = caseKey(r)
    groups.set(k, [...(groups.get(k) ?? []), r])
  }
  const out: CaseSummary[] = []
  for (const rs of groups.values()) {
    const first = rs[0] as RunResult
    const ok = rs.filter((r) => r.ok)
    const okVals = (f: (r: RunResult) => number | undefined): number[] =>
      ok.map(f).filter((v): v is number => v !== undefined)
    const s: CaseSummary = {
      scenario: first.scenario,
      system: first.system,
      nodes: first.nodes,
      imageBytes: first.imageBytes,
      tStarS: first.tStarS,
      runs: rs.length,
      okRuns: ok.length,
      originRatio: median(okVals((r) => r.originRatio)),
      slowestRatio: median(okVals((r) => r.slowestRatio)),
      medianRatio: median(okVals((r) => (r.medianMs === undefined ? undefined : r.medianMs / 1000 / r.tStarS))),
      slowestS: median(okVals((r) => (r.slowestMs === undefined ? undefined : r.slowestMs / 1000))),
      wallS: median(okVals((r) => (r.wallMs === undefined ? undefined : r.wallMs / 1000))),
      targets: [],
    }
    if (first.system === 'shoal') {
      s.originBlobRatio = median(
        okVals((r) => (r.originBlobBytes === undefined ? undefined : r.originBlobBytes / r.imageBytes)),
      )
      const t = (name: string, value: number | undefined, limit: number): void => {
        s.targets.push({ name, value, limit, met: value === undefined ? undefined : value <= limit })
      }
      const allOk = { name: 'runs that completed with right digests', value: ok.length, limit: rs.length }
      switch (first.scenario) {
        case 'P1':
        case 'P2':
        case 'size-sweep':
        case 'n-sweep':
          t('origin bytes / image', s.originRatio, 1.05)
          t('slowest node / T*', s.slowestRatio, 1.3)
          break
        case 'P3':
          s.targets.push({ ...allOk, met: ok.length === rs.length })
          break
        case 'P4':
          t('origin blob bytes / image', s.originBlobRatio, 0)
          t('slowest node / (S/R_node)', s.slowestRatio, 1.3)
          break
      }
      if (first.scenario !== 'P3' && ok.length < rs.length) s.targets.push({ ...allOk, met: false })
    }
    out.push(s)
  }
  return out
}

const f = (v: number | undefined, d = 2): string => (v === undefined || !Number.isFinite(v) ? 'n/a' : v.toFixed(d))

/** Columns padded to their widest cell: the first left-aligned, the others right-aligned. */
export function grid(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? []
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
}

/** One line per case: ratios first (origin bytes / image, slowest / T*), seconds beside them. */
export function renderSummary(summary: CaseSummary[]): string {
  const rows: string[][] = [
    ['case', 'N', 'MiB', 'T* s', 'origin/S', 'slowest/T*', 'median/T*', 'slowest s', 'vs Shoal', 'runs ok', 'targets'],
  ]
  const shoalOf = (c: CaseSummary): CaseSummary | undefined =>
    summary.find(
      (x) => x.system === 'shoal' && x.scenario === c.scenario && x.nodes === c.nodes && x.imageBytes === c.imageBytes,
    )
  for (const c of summary) {
    const base = shoalOf(c)
    const vs =
      c.system === 'shoal' || base?.slowestS === undefined || c.slowestS === undefined
        ? ''
        : `${(c.slowestS / base.slowestS).toFixed(1)}× slower`
    const targets = c.targets
      .map((t) => `${t.name} ≤ ${t.limit}: ${t.met === undefined ? 'n/a' : t.met ? 'ok' : `MISSED (${f(t.value)})`}`)
      .join('; ')
    rows.push([
      `${c.scenario} ${c.system === 'shoal' ? 'Shoal' : c.system === 'direct' ? '(a) direct' : '(b) proxy'}`,
      String(c.nodes),
      (c.imageBytes / MiB).toFixed(0),
      f(c.tStarS, 1),
      c.system === 'shoal' && c.scenario === 'P4'
        ? `${f(c.originRatio)} (blob ${f(c.originBlobRatio)})`
        : f(c.originRatio),
      f(c.slowestRatio),
      f(c.medianRatio),
      f(c.slowestS, 1),
      vs,
      `${c.okRuns}/${c.runs}`,
      targets,
    ])
  }
  return grid(rows)
}

/** Per node of one run: time, bytes by source, link bytes, CPU and peak RSS of its server. */
export function renderNodes(r: RunResult): string {
  const rows: string[][] = [
    [
      'node',
      'role',
      'start s',
      'took s',
      'origin MiB',
      'peer MiB',
      'cache MiB',
      'unwanted MiB',
      'link rx MiB',
      'link tx MiB',
      'CPU s',
      'pull CPU s',
      'of it sys',
      'faults MiB',
      'peak RSS MiB',
      'peers',
      'result',
    ],
  ]
  for (const n of r.nodeResults) {
    rows.push([
      String(n.node),
      n.role,
      f(n.startMs / 1000, 1),
      f(n.durationMs === undefined ? undefined : n.durationMs / 1000, 1),
      f(n.bytesBySource === undefined ? undefined : n.bytesBySource.origin / MiB, 0),
      f(n.bytesBySource === undefined ? undefined : n.bytesBySource.peer / MiB, 0),
      f(n.bytesBySource === undefined ? undefined : n.bytesBySource.cache / MiB, 0),
      f(n.bytesBySource?.unwanted === undefined ? undefined : n.bytesBySource.unwanted / MiB, 0),
      f(n.netRx === undefined ? undefined : n.netRx / MiB, 0),
      f(n.netTx === undefined ? undefined : n.netTx / MiB, 0),
      f(n.server?.cpuSeconds, 1),
      f(n.server?.pullCpuSeconds, 1),
      f(n.server?.pullSysSeconds, 1),
      f(n.server?.pullFaultMiB, 0),
      f(n.server?.peakRssMiB, 0),
      n.peersAtStart === undefined ? '' : String(n.peersAtStart),
      n.ok ? (n.role === 'pull' ? 'ok' : '') : ((n.error ?? 'failed').split('\n')[0]?.slice(0, 80) ?? 'failed'),
    ])
  }
  return grid(rows)
}

/** The run of a case whose slowest time is the median one (the one drawn and detailed). */
export function representative(runs: RunResult[]): RunResult | undefined {
  const ok = runs.filter((r) => r.slowestMs !== undefined).sort((a, b) => (a.slowestMs ?? 0) - (b.slowestMs ?? 0))
  return ok[Math.floor((ok.length - 1) / 2)] ?? runs[0]
}

export function systemName(s: System): string {
  return SYSTEM_LABEL[s]
}
