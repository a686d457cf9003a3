/**
 * runLab: builds the lab, runs the chosen scenarios (Shoal and, for P1, P2 and each sweep point,
 * the baselines in the same lab), tears everything down, and writes the JSON and the SVG pictures.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, loadavg, release } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type CaseSpec, runCase } from './case.js'
import { Lab } from './lab.js'
import { run, writeCost } from './proc.js'
import { caseKey, renderNodes, renderSummary, representative, summarize } from './report.js'
import { progressSvg, sweepSvg } from './svg.js'
import type { Baseline, LabOptions, LabResult, RunResult, Scenario, System } from './types.js'

export const DEFAULTS: Omit<LabOptions, 'outDir'> = {
  scenarios: ['P1', 'P2', 'P3', 'P4'],
  runs: 3,
  sweepRuns: 1,
  nodes: 10,
  sizeMiB: 256,
  layers: 4,
  originMbit: 100,
  nodeMbit: 1000,
  qdisc: 'bfifo',
  baselines: ['direct', 'proxy'],
  staggerMs: 1000,
  churnKill: 3,
  churnAt: 0.3,
  sweepSizesMiB: [64, 128, 256, 512, 1024],
  sweepNodes: [3, 5, 10, 15, 20],
  keep: false,
  shoalLogLevel: 'info',
  bootstrap: 'one',
  clientLayout: 'oci',
  warmDaemons: false,
  sampleMs: 250,
  maxMinutes: 240,
}

/** The cases of a scenario, in groups (one per P1/P2 case or sweep point) whose runs interleave. */
export function casesOf(opts: LabOptions, scenario: Scenario): Omit<CaseSpec, 'run'>[][] {
  const base = {
    scenario,
    nodes: opts.nodes,
    sizeMiB: opts.sizeMiB,
    staggerMs: 0,
    churnKill: 0,
    churnAt: opts.churnAt,
    warm: false,
    sampleMs: opts.sampleMs,
    shoalLogLevel: opts.shoalLogLevel,
    bootstrap: opts.bootstrap,
    clientLayout: opts.clientLayout,
    warmDaemons: opts.warmDaemons,
  }
  const withBaselines = (
    spec: Omit<CaseSpec, 'run' | 'system'>,
    baselines: Baseline[] = opts.baselines,
  ): Omit<CaseSpec, 'run'>[] => (['shoal', ...baselines] as System[]).map((system) => ({ ...spec, system }))
  const sweepBaselines = opts.sweepBaselines ?? opts.baselines
  switch (scenario) {
    case 'P1':
      return [withBaselines(base)]
    case 'P2':
      return [withBaselines({ ...base, staggerMs: opts.staggerMs })]
    case 'P3':
      return [[{ ...base, system: 'shoal', churnKill: opts.churnKill }]]
    case 'P4':
      return [[{ ...base, system: 'shoal', warm: true }]]
    case 'size-sweep':
      return opts.sweepSizesMiB.map((sizeMiB) => withBaselines({ ...base, sizeMiB }, sweepBaselines))
    case 'n-sweep':
      return opts.sweepNodes.map((nodes) => withBaselines({ ...base, nodes }, sweepBaselines))
  }
}

export async function runLab(options: LabOptions): Promise<LabResult> {
  const opts = { ...options }
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`))
  const controller = new AbortController()
  const onAbort = (): void => controller.abort()
  opts.signal?.addEventListener('abort', onAbort, { once: true })
  const deadline = setTimeout(() => {
    log(`[lab] --max-minutes ${opts.maxMinutes} reached: stopping`)
    controller.abort()
  }, opts.maxMinutes * 60_000)
  deadline.unref()
  const { log: _l, signal: _s, onLab: _o, ...recorded } = opts
  const result: LabResult = {
    version: 1,
    startedAt: new Date().toISOString(),
    finishedAt: '',
    options: recorded,
    machine: {
      cpus: cpus().length,
      loadavgStart: loadavg(),
      loadavgEnd: [],
      node: process.version,
      kernel: release(),
      tcpCongestionControl: tcpCongestionControl(),
    },
    engine: await engineVersion(),
    runs: [],
    summary: [],
    errors: [],
    pids: [],
    namespaces: [],
    files: {},
  }
  const lab = new Lab({
    originMbit: opts.originMbit,
    nodeMbit: opts.nodeMbit,
    qdisc: opts.qdisc,
    layers: opts.layers,
    keep: opts.keep,
    log,
    signal: controller.signal,
  })
  opts.onLab?.(lab)
  try {
    const maxNodes = Math.max(opts.nodes, ...(opts.scenarios.includes('n-sweep') ? opts.sweepNodes : []))
    await lab.setup(maxNodes)
    result.machine.writeCost = writeCost(lab.workDir)
    for (const scenario of opts.scenarios) {
      const runs = scenario.endsWith('sweep') ? opts.sweepRuns : opts.runs
      for (const group of casesOf(opts, scenario)) {
        for (let run = 1; run <= runs; run++) {
          for (const spec of group) {
            lab.checkAbort()
            result.runs.push(await runCase(lab, { ...spec, run }))
          }
        }
      }
    }
  } catch (err) {
    result.errors.push(err instanceof Error ? err.message : String(err))
    log(`[lab] ERROR: ${result.errors.at(-1)}`)
  } finally {
    clearTimeout(deadline)
    opts.signal?.removeEventListener('abort', onAbort)
    log('[lab] teardown: stopping every process the lab started (by PID), deleting its namespaces')
    const problems = await lab.teardown()
    result.errors.push(...problems)
    for (const p of problems) log(`[lab] teardown problem: ${p}`)
    result.pids = lab.procs.started.map((p) => p.pid)
    result.namespaces = [...lab.namespaces]
    if (opts.keep) log(`[lab] kept ${lab.workDir}`)
  }
  result.machine.loadavgEnd = loadavg()
  result.summary = summarize(result.runs)
  result.finishedAt = new Date().toISOString()
  await writeOutputs(result, opts.outDir, log)
  return result
}

/** git HEAD of the tree the daemon comes from, and a short hash of `git diff HEAD -- src`. */
async function engineVersion(): Promise<{ head: string; srcDiff: string }> {
  const root = fileURLToPath(new URL('../../../', import.meta.url))
  const head = (await run('git', ['-C', root, 'rev-parse', '--short', 'HEAD']).catch(() => 'unknown')).trim()
  const diff = await run('git', ['-C', root, 'diff', 'HEAD', '--', 'src']).catch(() => '')
  const srcDiff = diff === '' ? 'clean' : createHash('sha256').update(diff).digest('hex').slice(0, 12)
  return { head, srcDiff }
}

/** The printable report: summary table and, for each Shoal case, its nodes (median run). */
export function renderReport(result: LabResult): string {
  const parts: string[] = []
  const o = result.options
  parts.push(
    `Shoal lab — origin ${o.originMbit} Mbit/s, nodes ${o.nodeMbit} Mbit/s (HTB, ${o.qdisc ?? 'pfifo'}), ${o.layers} layers; ` +
      `median of ${o.runs} run(s) (sweeps: ${o.sweepRuns}); engine ${result.engine.head}+${result.engine.srcDiff}; load avg ${result.machine.loadavgStart[0]?.toFixed(2)} → ${result.machine.loadavgEnd[0]?.toFixed(2)} on ${result.machine.cpus} CPUs; TCP congestion control ${result.machine.tcpCongestionControl ?? 'unknown'}${o.warmDaemons ? '; warm daemons' : ''}`,
  )
  const wc = result.machine.writeCost
  if (wc !== undefined) {
    parts.push(
      `this machine writes a new file at ${wc.firstMsPerMiB} ms of CPU per MiB, ${wc.againMsPerMiB} ms at once again on the same pages (new memory is dear on a VM that gives freed memory back to its host)`,
    )
  }
  parts.push(
    'origin/S = bytes the origin interface sent / image size; slowest/T* = slowest pull / max(S/R_origin, S/R_node) (P4: S/R_node)',
  )
  parts.push('')
  parts.push(renderSummary(result.summary))
  const groups = new Map<string, RunResult[]>()
  for (const r of result.runs) groups.set(caseKey(r), [...(groups.get(caseKey(r)) ?? []), r])
  for (const runs of groups.values()) {
    const r = representative(runs)
    if (r === undefined || r.system !== 'shoal') continue
    parts.push('')
    parts.push(
      `${r.scenario} Shoal, N=${r.nodes}, ${(r.imageBytes / 2 ** 20).toFixed(0)} MiB, run ${r.run} (median): per node${r.killedAtMs === undefined ? '' : `; daemons killed at ${(r.killedAtMs / 1000).toFixed(1)} s`}`,
    )
    parts.push(renderNodes(r))
    const pullCpu = r.nodeResults.reduce((a, n) => a + (n.server?.pullCpuSeconds ?? 0), 0)
    if (pullCpu > 0 && r.slowestMs !== undefined) {
      const cores = result.machine.cpus
      parts.push(
        `daemons' CPU during the pulls: ${pullCpu.toFixed(1)} s in all, ${(pullCpu / (r.imageBytes / 2 ** 20)).toFixed(3)} s per MiB of image; / ${cores} cores = ${(pullCpu / cores).toFixed(1)} s beside the slowest pull's ${(r.slowestMs / 1000).toFixed(1)} s`,
      )
      const sys = r.nodeResults.reduce((a, n) => a + (n.server?.pullSysSeconds ?? 0), 0)
      const faults = r.nodeResults.reduce((a, n) => a + (n.server?.pullFaultMiB ?? 0), 0)
      parts.push(
        `  of it in the kernel ${sys.toFixed(1)} s; minor page faults, as 4 KiB pages, ${faults.toFixed(0)} MiB (a huge-page fault maps up to 2 MiB and counts once)`,
      )
    }
    const m = r.machineCpu
    if (m !== undefined) {
      parts.push(
        `the whole machine during the pulls: ${m.busyPct} % busy (user ${m.userPct} %, kernel ${m.systemPct} %, softirq ${m.softirqPct} %, steal ${m.stealPct} %)`,
      )
    }
  }
  if (result.errors.length > 0) {
    parts.push('')
    parts.push(`ERRORS:\n  ${result.errors.join('\n  ')}`)
  }
  return parts.join('\n')
}

async function writeOutputs(result: LabResult, outDir: string, log: (l: string) => void): Promise<void> {
  await mkdir(outDir, { recursive: true })
  const stamp = result.startedAt.replace(/[:.]/g, '-')
  const progress: string[] = []
  for (const scenario of ['P1', 'P2', 'P3', 'P4'] as Scenario[]) {
    const runs = result.runs.filter((r) => r.scenario === scenario)
    if (runs.length === 0) continue
    const reps: RunResult[] = []
    for (const system of ['shoal', 'direct', 'proxy'] as System[]) {
      const r = representative(runs.filter((x) => x.system === system))
      if (r !== undefined) reps.push(r)
    }
    const file = join(outDir, `lab-${scenario}-progress.svg`)
    await writeFile(file, progressSvg(`${scenario}: progress of every node`, reps))
    progress.push(file)
  }
  if (progress.length > 0) result.files.progressSvg = progress
  const size = result.summary.filter((c) => c.scenario === 'size-sweep')
  const nodes = result.summary.filter((c) => c.scenario === 'n-sweep')
  if (size.length > 0 || nodes.length > 0) {
    const file = join(outDir, 'lab-sweeps.svg')
    await writeFile(file, sweepSvg(size, nodes))
    result.files.sweepSvg = file
  }
  const json = join(outDir, `lab-${stamp}.json`)
  result.files.json = json
  const text = `${JSON.stringify(result, null, 1)}\n`
  await writeFile(json, text)
  await writeFile(join(outDir, 'lab-latest.json'), text)
  log(
    `[lab] wrote ${json}${progress.length > 0 ? `, ${progress.join(', ')}` : ''}${result.files.sweepSvg === undefined ? '' : `, ${result.files.sweepSvg}`}`,
  )
}

/** The TCP congestion control new network namespaces start with (the host's; the lab's hosts use it). */
function tcpCongestionControl(): string | undefined {
  try {
    return readFileSync('/proc/sys/net/ipv4/tcp_congestion_control', 'utf8').trim()
  } catch {
    return undefined
  }
}
