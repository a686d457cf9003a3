/**
 * npm run lab -- [options]   (needs root: network namespaces and tc)
 *
 * Ctrl-C (SIGINT) or SIGTERM: the run in progress stops, every process the lab started is stopped
 * by PID and every namespace it made is deleted, then the lab exits 130. A second Ctrl-C SIGKILLs
 * the lab's processes at once and exits (then `npm run lab -- --cleanup` removes what is left).
 */
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { listNamespaces, netnsPermitted } from './netns.js'
import { run } from './proc.js'
import { DEFAULTS, renderReport, runLab } from './run.js'
import { type Baseline, type LabOptions, SCENARIOS, type Scenario } from './types.js'

const USAGE = `usage: npm run lab -- [options]        (as root)

  --scenario <list>     P1,P2,P3,P4,size-sweep,n-sweep or all (default P1,P2,P3,P4)
  --runs <n>            runs per case, median reported (default 3)
  --sweep-runs <n>      runs per sweep point (default 1)
  --nodes <n>           node hosts N (default 10)
  --size <MiB>          image size (default 256)
  --layers <n>          layers of the image (default 4)
  --origin-mbit <n>     origin link rate (default 100)
  --node-mbit <n>       node link rate (default 1000)
  --qdisc <q>           queue under each link's rate: bfifo (50 ms of the link, 256 KiB at least;
                        default) or pfifo (HTB's own, 1000 packets: the first passes; bufferbloat)
  --baselines <list>    direct,proxy or none: baselines beside Shoal in P1, P2 and at each sweep
                        point (default direct,proxy)
  --sweep-baselines <l> direct,proxy or none: the sweeps' baselines instead (default: --baselines)
  --stagger-ms <n>      P2: delay between node starts (default 1000)
  --churn-kill <n>      P3: daemons killed (default 3)
  --churn-at <f>        P3: the daemons' mean progress (blob bytes obtained) at the kill (default 0.3)
  --sweep-sizes <list>  size sweep, MiB (default 64,128,256,512,1024)
  --sweep-nodes <list>  N sweep (default 3,5,10,15,20)
  --out <dir>           results dir (default bench/results)
  --keep                keep the work dir (/tmp/shoal-shlab*: logs, data dirs)
  --log-level <l>       the daemons' log level (default info)
  --bootstrap <one|all> daemons 2…N bootstrap to node 1 only (default), or each to all the others
  --client-layout <l>   skopeo's destination: oci (layers in parallel, like containerd; default)
                        or dir (skopeo 1.9 copies the layers one after the other)
  --warm-daemons        before each Shoal case, every daemon serves one pull of a small image of
                        its own (16 MiB, all nodes at once) and the case waits until the daemons'
                        CPU is quiet: daemons that have run before, as on a fleet (default: daemons
                        started for the case; their first pull also compiles their code)
  --max-minutes <n>     hard bound on the whole lab (default 240)
  --cleanup             only remove namespaces (shlab*) and their processes left by a killed lab
  -h, --help

Sweeps run in several labs, one chart from their result files (a case in several: the newest):
  npm run lab:chart -- --out <file.svg> bench/results/lab-<time>.json...`

function list(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
}

function int(text: string, name: string, min: number, max: number): number {
  const v = Number(text)
  if (!Number.isInteger(v) || v < min || v > max)
    throw new Error(`--${name}: want an integer ${min}…${max}, got ${text}`)
  return v
}

function baselines(text: string, name: string): Baseline[] {
  const b = list(text)
  if (b.includes('none')) return []
  for (const x of b) if (x !== 'direct' && x !== 'proxy') throw new Error(`--${name}: unknown ${x}`)
  return b as Baseline[]
}

export function parseLabArgs(argv: string[], outDefault: string): LabOptions & { cleanup: boolean; help: boolean } {
  const { values } = parseArgs({
    args: argv,
    options: {
      scenario: { type: 'string' },
      runs: { type: 'string' },
      'sweep-runs': { type: 'string' },
      nodes: { type: 'string' },
      size: { type: 'string' },
      layers: { type: 'string' },
      'origin-mbit': { type: 'string' },
      'node-mbit': { type: 'string' },
      qdisc: { type: 'string' },
      baselines: { type: 'string' },
      'sweep-baselines': { type: 'string' },
      'stagger-ms': { type: 'string' },
      'churn-kill': { type: 'string' },
      'churn-at': { type: 'string' },
      'sweep-sizes': { type: 'string' },
      'sweep-nodes': { type: 'string' },
      out: { type: 'string' },
      keep: { type: 'boolean' },
      'log-level': { type: 'string' },
      bootstrap: { type: 'string' },
      'client-layout': { type: 'string' },
      'warm-daemons': { type: 'boolean' },
      'max-minutes': { type: 'string' },
      cleanup: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  })
  const o: LabOptions & { cleanup: boolean; help: boolean } = {
    ...DEFAULTS,
    outDir: values.out ?? outDefault,
    cleanup: values.cleanup === true,
    help: values.help === true,
  }
  if (values.scenario !== undefined) {
    const s = list(values.scenario)
    o.scenarios = s.includes('all') ? [...SCENARIOS] : (s as Scenario[])
    for (const x of o.scenarios) if (!SCENARIOS.includes(x)) throw new Error(`--scenario: unknown ${x}`)
  }
  if (values.runs !== undefined) o.runs = int(values.runs, 'runs', 1, 20)
  if (values['sweep-runs'] !== undefined) o.sweepRuns = int(values['sweep-runs'], 'sweep-runs', 1, 20)
  if (values.nodes !== undefined) o.nodes = int(values.nodes, 'nodes', 2, 40)
  if (values.size !== undefined) o.sizeMiB = int(values.size, 'size', 1, 8192)
  if (values.layers !== undefined) o.layers = int(values.layers, 'layers', 1, 64)
  if (values['origin-mbit'] !== undefined) o.originMbit = int(values['origin-mbit'], 'origin-mbit', 1, 100_000)
  if (values['node-mbit'] !== undefined) o.nodeMbit = int(values['node-mbit'], 'node-mbit', 1, 100_000)
  if (values.qdisc !== undefined) {
    if (values.qdisc !== 'bfifo' && values.qdisc !== 'pfifo')
      throw new Error(`--qdisc: bfifo or pfifo, got ${values.qdisc}`)
    o.qdisc = values.qdisc
  }
  if (values.baselines !== undefined) o.baselines = baselines(values.baselines, 'baselines')
  if (values['sweep-baselines'] !== undefined)
    o.sweepBaselines = baselines(values['sweep-baselines'], 'sweep-baselines')
  if (values['stagger-ms'] !== undefined) o.staggerMs = int(values['stagger-ms'], 'stagger-ms', 0, 600_000)
  if (values['churn-kill'] !== undefined) o.churnKill = int(values['churn-kill'], 'churn-kill', 0, 39)
  if (values['churn-at'] !== undefined) {
    o.churnAt = Number(values['churn-at'])
    if (!(o.churnAt > 0 && o.churnAt < 1)) throw new Error('--churn-at: want a fraction between 0 and 1')
  }
  if (values['sweep-sizes'] !== undefined)
    o.sweepSizesMiB = list(values['sweep-sizes']).map((x) => int(x, 'sweep-sizes', 1, 8192))
  if (values['sweep-nodes'] !== undefined)
    o.sweepNodes = list(values['sweep-nodes']).map((x) => int(x, 'sweep-nodes', 2, 40))
  if (values.keep === true) o.keep = true
  if (values['log-level'] !== undefined) o.shoalLogLevel = values['log-level']
  if (values.bootstrap !== undefined) {
    if (values.bootstrap !== 'one' && values.bootstrap !== 'all') throw new Error('--bootstrap: one or all')
    o.bootstrap = values.bootstrap
  }
  if (values['client-layout'] !== undefined) {
    if (values['client-layout'] !== 'oci' && values['client-layout'] !== 'dir')
      throw new Error('--client-layout: oci or dir')
    o.clientLayout = values['client-layout']
  }
  if (values['warm-daemons'] === true) o.warmDaemons = true
  if (values['max-minutes'] !== undefined) o.maxMinutes = int(values['max-minutes'], 'max-minutes', 1, 24 * 60)
  if (o.scenarios.includes('P3') && o.churnKill >= o.nodes) throw new Error('--churn-kill must be below --nodes')
  return o
}

/** Removes namespaces named shlab* that a killed lab left, SIGKILLing the processes inside them by PID. */
async function cleanup(): Promise<void> {
  const stale = (await listNamespaces()).filter((ns) => /^shlab[0-9a-f]{4}-/.test(ns))
  if (stale.length === 0) {
    process.stdout.write('no lab namespaces left\n')
    return
  }
  for (const ns of stale) {
    const pids = (await run('ip', ['netns', 'pids', ns]).catch(() => ''))
      .split('\n')
      .map((x) => Number(x.trim()))
      .filter((x) => Number.isInteger(x) && x > 1)
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
    await new Promise((r) => setTimeout(r, 200))
    await run('ip', ['netns', 'del', ns]).catch((err: unknown) => process.stderr.write(`${String(err)}\n`))
    process.stdout.write(`removed ${ns}${pids.length > 0 ? ` (killed PIDs ${pids.join(' ')})` : ''}\n`)
  }
}

async function main(): Promise<number> {
  const outDefault = fileURLToPath(new URL('../../../bench/results', import.meta.url))
  let opts: ReturnType<typeof parseLabArgs>
  try {
    opts = parseLabArgs(process.argv.slice(2), outDefault)
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n\n${USAGE}\n`)
    return 2
  }
  if (opts.help) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  const why = await netnsPermitted()
  if (why !== undefined) {
    process.stderr.write(`the lab cannot run here: ${why}\n`)
    return 1
  }
  if (opts.cleanup) {
    await cleanup()
    return 0
  }
  const controller = new AbortController()
  let interrupts = 0
  let killSync: (() => void) | undefined
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupts++
    if (interrupts === 1) {
      process.stderr.write(`\n[lab] ${sig}: stopping the run and tearing the lab down (again to force)\n`)
      controller.abort()
      return
    }
    process.stderr.write('[lab] forced: SIGKILL of the lab processes; run `npm run lab -- --cleanup` for namespaces\n')
    killSync?.()
    process.exit(130)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  const result = await runLab({
    ...opts,
    signal: controller.signal,
    log: (line) => process.stderr.write(`${line}\n`),
    onLab: (lab) => {
      killSync = () => lab.killAllSync()
      process.on('exit', () => lab.killAllSync())
    },
  })
  process.stdout.write(`\n${renderReport(result)}\n`)
  if (controller.signal.aborted) return 130
  return result.errors.length > 0 || result.runs.some((r) => !r.ok) ? 1 : 0
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  },
)
