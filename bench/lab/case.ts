/**
 * One measured run: N node hosts, each with its server (a Shoal daemon, a docker-registry proxy,
 * or none) and a skopeo client pulling the image into a `dir:` layout; progress sampled every
 * `sampleMs`; origin bytes from the origin interface; bytes by source, CPU and peak RSS per server.
 */
import { createHash } from 'node:crypto'
import { createReadStream, mkdirSync, writeFileSync } from 'node:fs'
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { readMem } from '../lib/procs.js'
import { MiB } from './image.js'
import {
  ADMIN_PORT,
  DEAD_PORT,
  type Host,
  type Lab,
  mirrorRegistriesConf,
  P2P_PORT,
  type PushedImage,
  REGISTRY_BIN,
  REGISTRY_PORT,
  registryConfig,
  SHOAL_MAIN,
  SKOPEO_BIN,
} from './lab.js'
import { nodeAddr, ORIGIN_ADDR, type QueueCounts, queueCounts } from './netns.js'
import { describeExit, type LabProc, machineShares, machineTimes, type ProcTimes, procTimes, tail } from './proc.js'
import type { BytesBySource, DaemonUsage, NodeResult, RunResult, Scenario, SwarmMessages, System } from './types.js'

export interface CaseSpec {
  scenario: Scenario
  system: System
  run: number
  nodes: number
  sizeMiB: number
  /** Client k starts (k−1)·staggerMs after the first. */
  staggerMs: number
  /** Kill this many daemons (and their clients) when the daemons' mean progress reaches `churnAt`. */
  churnKill: number
  churnAt: number
  /** Node 1 pulls alone first; nodes 2…N are measured. */
  warm: boolean
  sampleMs: number
  shoalLogLevel: string
  bootstrap: 'one' | 'all'
  clientLayout: 'oci' | 'dir'
  /** Shoal only: each daemon serves one pull of a small image first, then the daemons go quiet (see warmUp). */
  warmDaemons: boolean
}

/** The image each daemon serves once before the case with `warmDaemons` (its own content and repository). */
export const WARMUP_MIB = 16

/** The daemons count as quiet when together they use less than this share of a core per daemon, over a second. */
const QUIET_CORE_SHARE = 0.03

/** …waited for this long at most (the case goes on either way, and says so). */
const QUIET_WAIT_MS = 30_000

interface NodeState {
  k: number
  host: Host
  dir: string
  out: string
  server: LabProc | undefined
  client: LabProc | undefined
  role: NodeResult['role']
  startMs: number | undefined
  progress: [number, number][]
  /** [ms since t0, the switch port's tx and rx counters: bytes the node's link received, sent]. */
  linkSeries: [number, number, number][]
  usage: DaemonUsage | undefined
  /** The server's CPU times and page faults at t0. */
  atT0: ProcTimes | undefined
  peersAtStart: number | undefined
  bytesBySource: BytesBySource | undefined
  swarmMessages?: SwarmMessages
  /** With warm daemons: the daemon's counters after the warm-up pull (see warmUp). */
  countedBefore?: { bytes: BytesBySource; messages: SwarmMessages }
  error: string | undefined
}

const median = (xs: number[]): number | undefined => {
  if (xs.length === 0) return undefined
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] : ((s[m - 1] as number) + (s[m] as number)) / 2
}

/** Each node's two link queues (download: the switch port's; upload: its eth0's), by node number. */
async function linkQueues(
  switchNs: string,
  nodes: NodeState[],
): Promise<Map<number, NonNullable<NodeResult['queues']>>> {
  const out = new Map<number, NonNullable<NodeResult['queues']>>()
  await Promise.all(
    nodes.map(async (n) => {
      try {
        out.set(n.k, { down: await queueCounts(switchNs, n.host.port), up: await queueCounts(n.host.ns, 'eth0') })
      } catch {
        // tc without JSON statistics: the run goes on without them
      }
    }),
  )
  return out
}

/** Kill victims for churn: spread over the nodes, never node 1 (the bootstrap). */
export function churnVictims(nodes: number, kill: number): number[] {
  const out: number[] = []
  for (let i = 0; i < kill; i++) out.push(2 + Math.floor((i * (nodes - 1)) / Math.max(1, kill)))
  return [...new Set(out)].filter((k) => k >= 2 && k <= nodes)
}

export function tStarSeconds(imageBytes: number, originMbit: number, nodeMbit: number, warm: boolean): number {
  const rOrigin = (originMbit * 1e6) / 8
  const rNode = (nodeMbit * 1e6) / 8
  return warm ? imageBytes / rNode : Math.max(imageBytes / rOrigin, imageBytes / rNode)
}

export async function runCase(lab: Lab, spec: CaseSpec): Promise<RunResult> {
  const topo = lab.topology
  const probe = lab.probeOrThrow
  const pushed = await lab.image(spec.sizeMiB)
  const S = pushed.image.size
  const tStarS = tStarSeconds(S, lab.opts.originMbit, lab.opts.nodeMbit, spec.warm)
  const label = `${spec.scenario} ${spec.system} N=${spec.nodes} ${spec.sizeMiB} MiB run ${spec.run}`
  const runDir = join(lab.workDir, `${spec.scenario}-${spec.system}-n${spec.nodes}-${spec.sizeMiB}m-r${spec.run}`)
  await mkdir(runDir, { recursive: true })
  const policy = join(runDir, 'policy.json')
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }))
  const errors: string[] = []
  const nodes: NodeState[] = topo.nodes.slice(0, spec.nodes).map((host, i) => ({
    k: i + 1,
    host,
    dir: join(runDir, host.name),
    out: join(runDir, host.name, 'pull'),
    server: undefined,
    client: undefined,
    role: 'pull',
    startMs: undefined,
    progress: [],
    linkSeries: [],
    usage: undefined,
    atT0: undefined,
    peersAtStart: undefined,
    bytesBySource: undefined,
    error: undefined,
  }))
  const result: RunResult = {
    scenario: spec.scenario,
    system: spec.system,
    run: spec.run,
    nodes: spec.nodes,
    pullers: spec.warm ? spec.nodes - 1 : spec.nodes,
    imageBytes: S,
    originMbit: lab.opts.originMbit,
    nodeMbit: lab.opts.nodeMbit,
    tStarS,
    originBytes: 0,
    originRatio: 0,
    slowestMs: undefined,
    slowestRatio: undefined,
    medianMs: undefined,
    wallMs: undefined,
    ok: false,
    errors,
    nodeResults: [],
    originSeries: [],
    startedAt: new Date().toISOString(),
  }
  try {
    lab.log(`${label}: starting ${spec.system === 'direct' ? 'no servers' : `${spec.nodes} ${spec.system} servers`}`)
    for (const n of nodes) await mkdir(n.out, { recursive: true })
    if (spec.system !== 'direct') {
      for (const n of nodes) n.server = startServer(lab, spec, n)
      await Promise.all(nodes.map((n) => lab.waitHttp(`http://${n.host.addr}:${REGISTRY_PORT}/v2/`, n.server!, 90_000)))
    }
    if (spec.system === 'shoal') await waitForSwarm(lab, nodes)
    if (spec.system === 'shoal' && spec.warmDaemons) await warmUp(lab, spec, nodes, policy, label)

    if (spec.warm) {
      const seed = nodes[0] as NodeState
      seed.role = 'seed'
      lab.log(`${label}: node 1 pulls alone first (the warm seed)`)
      const seedStart = performance.now()
      seed.client = startClient(lab, spec, pushed, seed, policy, 'seed')
      const exit = await withTimeout(
        seed.client.exited,
        (90 + 3 * tStarSeconds(S, lab.opts.originMbit, lab.opts.nodeMbit, false)) * 1000,
        lab,
      )
      if (exit === undefined || exit.code !== 0) {
        throw new Error(
          `the warm seed's pull failed (${exit === undefined ? 'timeout' : describeExit(exit)}):\n${tail(seed.client.logFile)}`,
        )
      }
      lab.log(`${label}: seed done in ${((performance.now() - seedStart) / 1000).toFixed(1)} s`)
      seed.startMs = 0
    }

    const pullers = nodes.filter((n) => n.role === 'pull')
    const victims = spec.churnKill > 0 ? new Set(churnVictims(spec.nodes, spec.churnKill)) : new Set<number>()
    const originBefore = await lab.originTx()
    const countersBefore = await probe.counters(nodes.map((n) => n.host.port))
    const queuesBefore = await linkQueues(topo.switchNs, nodes)
    for (const n of nodes) n.atT0 = n.server === undefined ? undefined : procTimes(n.server.pid)
    const machineAtT0 = machineTimes()
    const t0 = performance.now()
    const since = (): number => performance.now() - t0
    lab.log(
      `${label}: ${pullers.length} pulls${spec.staggerMs > 0 ? `, ${spec.staggerMs} ms apart` : ''}, T* = ${tStarS.toFixed(1)} s`,
    )

    // Clients start on schedule; the sampler runs until every client is done.
    const starts = pullers.map(async (n, i) => {
      const at = i * spec.staggerMs
      const wait = at - since()
      if (wait > 0) await lab.sleep(wait)
      n.startMs = since()
      n.client = startClient(lab, spec, pushed, n, policy, 'pull')
      return n.client.exited
    })
    let killedAt: number | undefined
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        const t = since()
        await Promise.all(
          pullers.map(async (n) => {
            if (n.client === undefined || n.role === 'killed') return
            const done = n.client.exit !== undefined
            const last = n.progress.at(-1)
            if (done && last !== undefined && n.progress.length > 1 && last[1] >= 1) return
            n.progress.push([Math.round(t), Math.min(1, (await dirBytes(n.out)) / S)])
          }),
        )
        try {
          const c = await probe.counters([topo.origin.port, ...nodes.map((n) => n.host.port)])
          const rx = c[topo.origin.port]?.rx
          if (rx !== undefined) result.originSeries.push([Math.round(t), rx])
          // Each node's link (the switch port's counters): where a node's download or upload idled.
          for (const n of nodes) {
            const port = c[n.host.port]
            if (port !== undefined) n.linkSeries.push([Math.round(t), port.tx, port.rx])
          }
        } catch {
          // a missed sample
        }
        if (victims.size > 0 && killedAt === undefined) {
          // The daemons' progress (blob bytes they obtained, from /metrics), not the clients': a
          // client receives each layer in order and lags the pieces its daemon holds, so at 30 % of
          // the clients' bytes most pieces had long been exchanged and the kill tested little.
          const live = pullers.filter((n) => n.client !== undefined)
          const got = await Promise.all(live.map((n) => daemonProgress(probe, n, S)))
          const mean = got.reduce((a, v) => a + v, 0) / Math.max(1, pullers.length)
          if (live.length === pullers.length && mean >= spec.churnAt) {
            killedAt = since()
            await churn(lab, nodes, victims, mean, label)
          }
        }
        await lab.sleep(spec.sampleMs)
      }
    })()
    sampler.catch(() => {})

    const budgetMs = runBudgetMs(spec, S, lab.opts.originMbit, lab.opts.nodeMbit)
    const all = Promise.all(starts)
    const finished = await withTimeout(all, budgetMs, lab)
    if (finished === undefined) {
      errors.push(`not every pull finished within ${(budgetMs / 1000).toFixed(0)} s`)
      for (const n of pullers) {
        if (n.client !== undefined && n.client.exit === undefined) await lab.procs.kill(n.client)
      }
    }
    sampling = false
    await sampler.catch(() => {})
    if (killedAt !== undefined) result.killedAtMs = Math.round(killedAt)

    // Background origin traffic (a proxy storing its copy) counts too: wait for a quiet link.
    const wholeRunMs = since()
    const machineCpu = machineShares(machineAtT0, machineTimes())
    if (machineCpu !== undefined) result.machineCpu = machineCpu
    await waitQuiet(lab, topo.origin.port, 2000, 120_000)
    const originAfter = await lab.originTx()
    result.originBytes = originAfter - originBefore
    result.originRatio = result.originBytes / S
    const countersAfter = await probe.counters(nodes.map((n) => n.host.port))
    const queuesAfter = await linkQueues(topo.switchNs, nodes)

    // Bytes by source and resource use, while the servers still run.
    for (const n of nodes) {
      if (n.server === undefined || n.role === 'killed') continue
      if (n.server.exit === undefined) n.usage = usageOf(n.server, n.atT0)
      if (spec.system === 'shoal') {
        try {
          const r = await probe.get(`http://${n.host.addr}:${ADMIN_PORT}/metrics`, 3000)
          n.bytesBySource = bytesSince(parseBytesBySource(r.body), n.countedBefore?.bytes)
          n.swarmMessages = messagesSince(parseSwarmMessages(r.body), n.countedBefore?.messages)
        } catch (err) {
          errors.push(`node ${n.k}: /metrics: ${err instanceof Error ? err.message : String(err)}`)
        }
      }
    }
    if (spec.system === 'shoal') {
      result.originBlobBytes = pullers.reduce((a, n) => a + (n.bytesBySource?.origin ?? 0), 0)
      if (spec.warm) {
        // The seed fetched the image before t0: only the pullers' origin bytes count.
      } else {
        result.originBlobBytes += nodes
          .filter((n) => n.role === 'seed')
          .reduce((a, n) => a + (n.bytesBySource?.origin ?? 0), 0)
      }
    }

    // Results per node; digests of every finished pull.
    for (const n of nodes) {
      const c = n.client
      const exit = c?.exit
      const endMs = exit === undefined || n.role !== 'pull' ? undefined : exit.at - t0
      let digestsOk: boolean | undefined
      let error = n.error
      if (n.role === 'pull' && exit?.code === 0) {
        const bad = await verifyPull(n.out, pushed, spec.clientLayout)
        digestsOk = bad === undefined
        if (bad !== undefined) error = bad
      } else if (n.role === 'pull') {
        error ??= `client ${exit === undefined ? 'did not finish' : describeExit(exit)}: ${tail(c?.logFile, 5)}`
      }
      const before = countersBefore[n.host.port]
      const after = countersAfter[n.host.port]
      const nr: NodeResult = {
        node: n.k,
        role: n.role,
        startMs: Math.round(n.startMs ?? 0),
        endMs: endMs === undefined ? undefined : Math.round(endMs),
        durationMs: endMs === undefined || n.startMs === undefined ? undefined : Math.round(endMs - n.startMs),
        exit: exit === undefined ? 'running' : describeExit(exit),
        digestsOk,
        ok: n.role !== 'pull' || (exit?.code === 0 && digestsOk === true),
        progress: n.progress,
      }
      const first = n.linkSeries[0]
      if (first !== undefined) nr.linkSeries = n.linkSeries.map(([t, rx, tx]) => [t, rx - first[1], tx - first[2]])
      if (error !== undefined) nr.error = error
      if (n.bytesBySource !== undefined) nr.bytesBySource = n.bytesBySource
      if (n.swarmMessages !== undefined) nr.swarmMessages = n.swarmMessages
      if (n.usage !== undefined) nr.server = n.usage
      if (n.peersAtStart !== undefined) nr.peersAtStart = n.peersAtStart
      if (before !== undefined && after !== undefined) {
        nr.netRx = after.tx - before.tx
        nr.netTx = after.rx - before.rx
      }
      const qb = queuesBefore.get(n.k)
      const qa = queuesAfter.get(n.k)
      if (qb !== undefined && qa !== undefined) {
        const since = (a: QueueCounts, b: QueueCounts): QueueCounts => ({
          sent: a.sent - b.sent,
          dropped: a.dropped - b.dropped,
        })
        nr.queues = { down: since(qa.down, qb.down), up: since(qa.up, qb.up) }
      }
      result.nodeResults.push(nr)
      if (!nr.ok) errors.push(`node ${n.k}: ${nr.error ?? 'failed'}`)
    }
    const durations = result.nodeResults
      .filter((r) => r.role === 'pull' && r.ok && r.durationMs !== undefined)
      .map((r) => r.durationMs as number)
    const ends = result.nodeResults
      .filter((r) => r.role === 'pull' && r.endMs !== undefined)
      .map((r) => r.endMs as number)
    const allDone = result.nodeResults.filter((r) => r.role === 'pull').every((r) => r.ok)
    if (allDone && durations.length > 0) {
      result.slowestMs = Math.max(...durations)
      result.slowestRatio = result.slowestMs / 1000 / tStarS
      result.wallMs = Math.max(...ends)
    }
    result.medianMs = median(durations)
    result.ok = errors.length === 0
    lab.log(
      `${label}: ${result.ok ? 'ok' : 'FAILED'}; origin ${(result.originBytes / MiB).toFixed(1)} MiB = ${result.originRatio.toFixed(2)}× image; slowest ${fmtS(result.slowestMs)} = ${result.slowestRatio?.toFixed(2) ?? 'n/a'}× T*; run ${(wholeRunMs / 1000).toFixed(1)} s${errors.length > 0 ? `\n  ${errors.join('\n  ')}` : ''}`,
    )
    return result
  } catch (err) {
    errors.push(err instanceof Error ? err.message : String(err))
    lab.log(`${label}: FAILED: ${errors.at(-1)}`)
    return result
  } finally {
    for (const n of nodes) if (n.client !== undefined) await lab.procs.stop(n.client, 2000)
    for (const n of nodes) if (n.server !== undefined) await lab.procs.stop(n.server, 8000)
    if (!lab.opts.keep) await rm(runDir, { recursive: true, force: true, maxRetries: 3 }).catch(() => {})
  }
}

function fmtS(ms: number | undefined): string {
  return ms === undefined ? 'n/a' : `${(ms / 1000).toFixed(1)} s`
}

/**
 * A CPU-second per MiB each Shoal daemon moves, for the run's bound: about twice what the lab
 * measured (0.05). Every host of the lab shares this machine's cores, so Shoal's run takes longer
 * with N although on separate hosts it would not; a bound at link speed alone failed N = 20
 * runs on two cores that were merely slow (each daemon at ~90 % when it struck).
 */
const SHOAL_CPU_S_PER_MIB = 0.1

/** A bound for the whole run (a hang, not a target): generous multiples of what each system needs. */
function runBudgetMs(spec: CaseSpec, S: number, originMbit: number, nodeMbit: number): number {
  const perPull = tStarSeconds(S, originMbit, nodeMbit, false)
  const pulls = spec.nodes
  const expected = spec.system === 'shoal' ? perPull : spec.system === 'direct' ? pulls * perPull : 2 * pulls * perPull
  const sharedCpu = spec.system === 'shoal' ? (pulls * (S / MiB) * SHOAL_CPU_S_PER_MIB) / availableParallelism() : 0
  return (120 + 4 * expected + sharedCpu + (spec.staggerMs * spec.nodes) / 1000) * 1000
}

function startServer(lab: Lab, spec: CaseSpec, n: NodeState): LabProc {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: n.dir }
  // libp2p's debug logging (DEBUG=libp2p:…) reaches the daemons' logs.
  if (process.env.DEBUG !== undefined) env.DEBUG = process.env.DEBUG
  // Where the probes of bench/lab/probes write (loaded with SHOAL_LAB_NODE_ARGS).
  if (process.env.SHOAL_PROBE_DIR !== undefined) env.SHOAL_PROBE_DIR = process.env.SHOAL_PROBE_DIR
  // glibc's allocator settings, for experiments with how the daemons' memory is reused.
  if (process.env.GLIBC_TUNABLES !== undefined) env.GLIBC_TUNABLES = process.env.GLIBC_TUNABLES
  if (spec.system === 'shoal') {
    const args = [
      'netns',
      'exec',
      n.host.ns,
      process.execPath,
      // SHOAL_LAB_CPU_PROF=DIR: every daemon writes a V8 CPU profile there when it stops.
      ...(process.env.SHOAL_LAB_CPU_PROF
        ? ['--cpu-prof', '--cpu-prof-dir', join(process.env.SHOAL_LAB_CPU_PROF, n.host.name)]
        : []),
      // SHOAL_LAB_NODE_ARGS: more Node flags for the daemons (e.g. --import a probe), space-separated.
      ...(process.env.SHOAL_LAB_NODE_ARGS?.split(' ').filter((a) => a !== '') ?? []),
      SHOAL_MAIN,
      'daemon',
      '--listen',
      `${n.host.addr}:${REGISTRY_PORT}`,
      '--data-dir',
      join(n.dir, 'data'),
      '--default-upstream',
      `http://${ORIGIN_ADDR}:${REGISTRY_PORT}`,
      '--p2p-listen',
      `/ip4/${n.host.addr}/tcp/${P2P_PORT}`,
      '--admin-listen',
      `${n.host.addr}:${ADMIN_PORT}`,
      '--log-level',
      spec.shoalLogLevel,
    ]
    const peers =
      spec.bootstrap === 'all'
        ? Array.from({ length: spec.nodes }, (_, i) => i + 1).filter((k) => k !== n.k)
        : n.k > 1
          ? [1]
          : []
    if (peers.length > 0) args.push('--bootstrap', ...peers.map((k) => `/ip4/${nodeAddr(k)}/tcp/${P2P_PORT}`))
    return lab.procs.spawn(`shoal-${n.host.name}`, 'ip', args, { env, logFile: join(n.dir, 'shoal.log') })
  }
  const configFile = join(n.dir, 'proxy.yml')
  // Written synchronously before the spawn: the registry reads it at start.
  const text = registryConfig({
    addr: `${n.host.addr}:${REGISTRY_PORT}`,
    root: join(n.dir, 'data'),
    proxyRemote: `http://${ORIGIN_ADDR}:${REGISTRY_PORT}`,
  })
  writeFileSyncSafe(configFile, text)
  return lab.procs.spawn(
    `proxy-${n.host.name}`,
    'ip',
    ['netns', 'exec', n.host.ns, REGISTRY_BIN, 'serve', configFile],
    {
      env,
      logFile: join(n.dir, 'proxy.log'),
    },
  )
}

function writeFileSyncSafe(path: string, text: string): void {
  mkdirSync(join(path, '..'), { recursive: true })
  writeFileSync(path, text)
}

function startClient(
  lab: Lab,
  spec: CaseSpec,
  pushed: PushedImage,
  n: NodeState,
  policy: string,
  what: 'seed' | 'pull' | 'warmup',
  out = n.out,
): LabProc {
  const conf = join(n.dir, 'registries.conf')
  const direct = spec.system === 'direct'
  writeFileSync(conf, mirrorRegistriesConf(direct ? undefined : `${n.host.addr}:${REGISTRY_PORT}`))
  const ref = direct
    ? `${ORIGIN_ADDR}:${REGISTRY_PORT}/${pushed.repo}:${pushed.image.tag}`
    : `${ORIGIN_ADDR}:${DEAD_PORT}/${pushed.repo}:${pushed.image.tag}`
  const args = [
    'netns',
    'exec',
    n.host.ns,
    SKOPEO_BIN,
    '--registries-conf',
    conf,
    '--policy',
    policy,
    'copy',
    '--quiet',
    '--src-no-creds',
  ]
  if (direct) args.push('--src-tls-verify=false')
  // An OCI layout destination would gzip the uncompressed layers (new digests, and CPU the
  // daemons then lack): keep them as they are.
  if (spec.clientLayout === 'oci') args.push('--dest-oci-accept-uncompressed-layers')
  args.push(`docker://${ref}`, `${spec.clientLayout}:${out}`)
  return lab.procs.spawn(`skopeo-${n.host.name}-${what}`, 'ip', args, {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: n.dir, TMPDIR: n.dir },
    logFile: join(n.dir, `client-${what}.log`),
  })
}

/**
 * Warm daemons: every node pulls an image of its own through its daemon, all at once (a small cold
 * herd: origin, pieces between peers, the clients' HTTP), then the lab waits until the daemons are
 * quiet. A daemon started for the case compiles its code during its first pull (~1 000 functions
 * optimised; an 8 MiB herd cost ten fresh daemons about twice the CPU it cost them the second time,
 * docs/BENCHMARKS.md, twenty-sixth pass), which a fleet's long-running daemons paid long before.
 */
async function warmUp(lab: Lab, spec: CaseSpec, nodes: NodeState[], policy: string, label: string): Promise<void> {
  const image = await lab.image(WARMUP_MIB, `lab/warmup-${WARMUP_MIB}m`)
  const started = performance.now()
  await Promise.all(
    nodes.map(async (n) => {
      const out = join(n.dir, 'warmup')
      await mkdir(out, { recursive: true })
      const client = startClient(lab, spec, image, n, policy, 'warmup', out)
      const exit = await withTimeout(client.exited, 120_000, lab)
      if (exit === undefined || exit.code !== 0) {
        if (exit === undefined) await lab.procs.kill(client)
        throw new Error(
          `node ${n.k}: the warm-up pull failed (${exit === undefined ? 'timeout' : describeExit(exit)}):\n${tail(client.logFile)}`,
        )
      }
      await rm(out, { recursive: true, force: true })
    }),
  )
  const pulledS = (performance.now() - started) / 1000
  const quiet = await daemonsQuiet(lab, nodes)
  // Counters are totals over a daemon's life: the case counts from here (a P4 seed's own pull
  // included, as without warm daemons).
  await Promise.all(
    nodes.map(async (n) => {
      const r = await lab.probeOrThrow.get(`http://${n.host.addr}:${ADMIN_PORT}/metrics`, 3000)
      n.countedBefore = { bytes: parseBytesBySource(r.body), messages: parseSwarmMessages(r.body) }
    }),
  )
  lab.log(
    `${label}: warm-up pulls (${WARMUP_MIB} MiB) done in ${pulledS.toFixed(1)} s; daemons ${quiet.quiet ? 'quiet' : 'still busy'} after ${(quiet.waitedMs / 1000).toFixed(1)} s more (${quiet.coreShare.toFixed(2)} of a core per daemon over the last second)`,
  )
}

/** Waits until the daemons' CPU is below QUIET_CORE_SHARE of a core each over a second, QUIET_WAIT_MS at most. */
async function daemonsQuiet(
  lab: Lab,
  nodes: NodeState[],
): Promise<{ quiet: boolean; waitedMs: number; coreShare: number }> {
  const pids = nodes.flatMap((n) => (n.server === undefined ? [] : [n.server.pid]))
  const cpu = (): number => pids.reduce((a, pid) => a + (procTimes(pid)?.cpuSeconds ?? 0), 0)
  const started = performance.now()
  let share = Number.POSITIVE_INFINITY
  while (performance.now() - started < QUIET_WAIT_MS) {
    const before = cpu()
    const t = performance.now()
    await lab.sleep(1000)
    share = (cpu() - before) / ((performance.now() - t) / 1000) / Math.max(1, pids.length)
    if (share < QUIET_CORE_SHARE) return { quiet: true, waitedMs: performance.now() - started, coreShare: share }
  }
  return { quiet: false, waitedMs: performance.now() - started, coreShare: share }
}

/** Every daemon connected to all the others, or 30 s: the peer counts are recorded either way. */
async function waitForSwarm(lab: Lab, nodes: NodeState[]): Promise<void> {
  const probe = lab.probeOrThrow
  const want = nodes.length - 1
  const start = performance.now()
  let counts: number[] = []
  while (performance.now() - start < 30_000) {
    counts = await Promise.all(
      nodes.map(async (n) => {
        try {
          const r = await probe.get(`http://${n.host.addr}:${ADMIN_PORT}/status`, 2000)
          return (JSON.parse(r.body) as { peers?: number }).peers ?? 0
        } catch {
          return 0
        }
      }),
    )
    if (counts.every((c) => c >= want)) break
    await lab.sleep(250)
  }
  nodes.forEach((n, i) => {
    n.peersAtStart = counts[i]
  })
  const ms = performance.now() - start
  if (counts.every((c) => c >= want))
    lab.log(`swarm formed: every daemon has ${want} peers (${(ms / 1000).toFixed(1)} s)`)
  else lab.log(`swarm NOT fully formed after ${(ms / 1000).toFixed(0)} s: peers per node ${counts.join(' ')}`)
}

async function churn(lab: Lab, nodes: NodeState[], victims: Set<number>, mean: number, label: string): Promise<void> {
  lab.log(`${label}: mean progress ${(mean * 100).toFixed(0)} %: killing daemons ${[...victims].join(', ')} (SIGKILL)`)
  for (const n of nodes) {
    if (!victims.has(n.k)) continue
    n.role = 'killed'
    if (n.server !== undefined) {
      n.usage = usageOf(n.server, n.atT0)
      await lab.procs.kill(n.server)
    }
    if (n.client !== undefined) await lab.procs.kill(n.client)
  }
}

/** The share of the image a daemon has obtained (origin + peer bytes), 0 when its /metrics does not answer. */
async function daemonProgress(probe: Lab['probeOrThrow'], n: NodeState, imageBytes: number): Promise<number> {
  try {
    const r = await probe.get(`http://${n.host.addr}:${ADMIN_PORT}/metrics`, 2000)
    const b = bytesSince(parseBytesBySource(r.body), n.countedBefore?.bytes)
    return Math.min(1, (b.origin + b.peer) / imageBytes)
  } catch {
    return 0
  }
}

function usageOf(p: LabProc, atT0: ProcTimes | undefined): DaemonUsage {
  const mem = readMem(p.pid)
  const now = procTimes(p.pid)
  const since = now !== undefined && atT0 !== undefined
  return {
    cpuSeconds: now?.cpuSeconds,
    pullCpuSeconds: since ? now.cpuSeconds - atT0.cpuSeconds : undefined,
    pullSysSeconds: since ? now.sysSeconds - atT0.sysSeconds : undefined,
    pullFaultMiB: since ? ((now.minorFaults - atT0.minorFaults) * 4) / 1024 : undefined,
    peakRssMiB: mem === undefined ? undefined : mem.hwmKiB / 1024,
  }
}

export function parseBytesBySource(text: string): BytesBySource {
  const out: BytesBySource = { origin: 0, peer: 0, cache: 0 }
  for (const line of text.split('\n')) {
    const m = /^shoal_blob_bytes_total\{source="(origin|peer|cache)"\}\s+([0-9.e+]+)/.exec(line)
    if (m?.[1] !== undefined && m[2] !== undefined) out[m[1] as 'origin' | 'peer' | 'cache'] = Number(m[2])
    const k = /^shoal_piece_bytes_total\{kind="(served|unwanted)"\}\s+([0-9.e+]+)/.exec(line)
    if (k?.[1] !== undefined && k[2] !== undefined) out[k[1] as 'served' | 'unwanted'] = Number(k[2])
  }
  return out
}

/** Counters now less those at an earlier reading (none: as they are). */
export function bytesSince(now: BytesBySource, before: BytesBySource | undefined): BytesBySource {
  if (before === undefined) return now
  const out: BytesBySource = {
    origin: now.origin - before.origin,
    peer: now.peer - before.peer,
    cache: now.cache - before.cache,
  }
  if (now.served !== undefined) out.served = now.served - (before.served ?? 0)
  if (now.unwanted !== undefined) out.unwanted = now.unwanted - (before.unwanted ?? 0)
  return out
}

export function messagesSince(now: SwarmMessages, before: SwarmMessages | undefined): SwarmMessages {
  if (before === undefined) return now
  const less = (a: Record<string, number>, b: Record<string, number>): Record<string, number> =>
    Object.fromEntries(Object.entries(a).map(([k, v]) => [k, v - (b[k] ?? 0)]))
  return {
    sent: less(now.sent, before.sent),
    received: less(now.received, before.received),
    declined: less(now.declined, before.declined),
  }
}

export function parseSwarmMessages(text: string): SwarmMessages {
  const out: SwarmMessages = { sent: {}, received: {}, declined: {} }
  for (const line of text.split('\n')) {
    const m = /^shoal_swarm_messages_total\{direction="(sent|received)",kind="(\w+)"\}\s+([0-9.e+]+)/.exec(line)
    if (m?.[1] !== undefined && m[2] !== undefined && m[3] !== undefined) {
      out[m[1] as 'sent' | 'received'][m[2]] = Number(m[3])
    }
    const d = /^shoal_piece_requests_declined_total\{reason="(\w+)"\}\s+([0-9.e+]+)/.exec(line)
    if (d?.[1] !== undefined && d[2] !== undefined) out.declined[d[1]] = Number(d[2])
  }
  return out
}

/** Bytes of the files under `dir` (two levels: an OCI layout keeps blobs in blobs/sha256/). */
async function dirBytes(dir: string, depth = 2): Promise<number> {
  let entries: import('node:fs').Dirent[]
  try {
    entries = await readdir(dir, { withFileTypes: true })
  } catch {
    return 0
  }
  const sizes = await Promise.all(
    entries.map(async (e) => {
      const path = join(dir, e.name)
      if (e.isDirectory()) return depth > 0 ? dirBytes(path, depth - 1) : 0
      try {
        return (await stat(path)).size
      } catch {
        return 0 // renamed meanwhile
      }
    }),
  )
  return sizes.reduce((a, b) => a + b, 0)
}

/** Checks the pulled layout (`dir:` or `oci:`): every layer and the config present, right size, right sha256. */
export async function verifyPull(
  out: string,
  pushed: PushedImage,
  layout: 'oci' | 'dir' = 'dir',
): Promise<string | undefined> {
  for (const blob of [pushed.image.config, ...pushed.image.layers]) {
    const hex = blob.digest.slice('sha256:'.length)
    const path = layout === 'oci' ? join(out, 'blobs', 'sha256', hex) : join(out, hex)
    let size: number
    try {
      size = (await stat(path)).size
    } catch {
      return `blob ${blob.digest} missing from the pulled image`
    }
    if (size !== blob.size) return `blob ${blob.digest}: ${size} bytes, want ${blob.size}`
    const hash = createHash('sha256')
    for await (const chunk of createReadStream(path, { highWaterMark: 4 * MiB })) hash.update(chunk as Buffer)
    if (hash.digest('hex') !== hex) return `blob ${blob.digest}: wrong content (sha256 differs)`
  }
  return undefined
}

async function waitQuiet(lab: Lab, port: string, quietMs: number, maxMs: number): Promise<void> {
  const probe = lab.probeOrThrow
  const start = performance.now()
  let last = -1
  let since = performance.now()
  while (performance.now() - start < maxMs) {
    const c = await probe.counters([port]).catch(() => ({}) as Record<string, { rx: number }>)
    const rx = c[port]?.rx ?? -1
    if (rx !== last) {
      last = rx
      since = performance.now()
    } else if (performance.now() - since >= quietMs) {
      return
    }
    await lab.sleep(250)
  }
  lab.log(`origin link not quiet after ${(maxMs / 1000).toFixed(0)} s; counting what it sent so far`)
}

async function withTimeout<T>(p: Promise<T>, ms: number, lab: Lab): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined
  const abort = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms)
    lab.opts.signal.addEventListener('abort', () => resolve(undefined), { once: true })
  })
  try {
    const r = await Promise.race([p, abort])
    lab.checkAbort()
    return r
  } finally {
    if (timer !== undefined) clearTimeout(timer)
  }
}
