/**
 * The lab's infrastructure: the namespaces, the probe in the switch namespace, the origin
 * docker-registry, the images pushed to it, and the servers and clients of one run. Everything it
 * starts or makes is recorded, and `teardown()` stops the processes by PID and deletes the
 * namespaces — also after a failure or an abort.
 */
import { existsSync } from 'node:fs'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { registryConfig } from '../lib/servers.js'
import { buildImage, type LabImage, MiB, POLICY_ACCEPT_ANYTHING } from './image.js'
import {
  createTopology,
  deleteNamespaces,
  type Host,
  type LeafQdisc,
  listNamespaces,
  ORIGIN_ADDR,
  SUBNET_PREFIX,
  type Topology,
} from './netns.js'
import { type LabProc, ProcTable, run, tail } from './proc.js'

/** dist/src/cli/main.js and dist/bench/lab/probe.js, next to this compiled file. */
export const SHOAL_MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))
const PROBE_MAIN = fileURLToPath(new URL('./probe.js', import.meta.url))
export const REGISTRY_BIN = process.env.LAB_REGISTRY_BIN ?? '/usr/bin/docker-registry'
export const SKOPEO_BIN = process.env.LAB_SKOPEO_BIN ?? 'skopeo'

export const REGISTRY_PORT = 5000
/** A port nothing listens on: the name clients use for the origin, so they can only go through their mirror. */
export const DEAD_PORT = 5999
export const ADMIN_PORT = 9100
export const P2P_PORT = 4001

interface ProbeReply {
  id: number
  status?: number
  body?: string
  error?: string
  counters?: Record<string, { rx: number; tx: number }>
}

/** Talks to probe.js in the switch namespace over its stdin/stdout. */
export class Probe {
  private nextId = 1
  private readonly pending = new Map<number, (r: ProbeReply) => void>()

  constructor(readonly proc: LabProc) {
    const out = proc.child.stdout
    if (out === null || out === undefined) throw new Error('probe has no stdout')
    const rl = createInterface({ input: out })
    rl.on('line', (line) => {
      let r: ProbeReply
      try {
        r = JSON.parse(line) as ProbeReply
      } catch {
        return
      }
      const done = this.pending.get(r.id)
      this.pending.delete(r.id)
      done?.(r)
    })
  }

  private call(req: Record<string, unknown>, timeoutMs: number): Promise<ProbeReply> {
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`probe: no answer to ${String(req.op)} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(id, (r) => {
        clearTimeout(timer)
        if (r.error !== undefined) reject(new Error(r.error))
        else resolve(r)
      })
      this.proc.child.stdin?.write(`${JSON.stringify({ id, ...req })}\n`)
    })
  }

  async get(url: string, timeoutMs = 3000): Promise<{ status: number; body: string }> {
    const r = await this.call({ op: 'get', url, timeoutMs }, timeoutMs + 2000)
    return { status: r.status ?? 0, body: r.body ?? '' }
  }

  async counters(devs: string[]): Promise<Record<string, { rx: number; tx: number }>> {
    const r = await this.call({ op: 'counters', devs }, 5000)
    return r.counters ?? {}
  }
}

export interface PushedImage {
  image: LabImage
  repo: string
}

export class Lab {
  readonly procs = new ProcTable()
  /** Every namespace made (pushed before it is made). */
  readonly namespaces: string[] = []
  readonly id: string
  readonly workDir: string
  topo: Topology | undefined
  probe: Probe | undefined
  origin: LabProc | undefined
  private readonly images = new Map<string, PushedImage>()
  private tornDown = false
  private readonly t0 = performance.now()

  constructor(
    readonly opts: {
      originMbit: number
      nodeMbit: number
      qdisc: LeafQdisc
      layers: number
      keep: boolean
      log: (line: string) => void
      signal: AbortSignal
    },
  ) {
    this.id = `shlab${Math.floor(Math.random() * 0xffff)
      .toString(16)
      .padStart(4, '0')}`
    this.workDir = join('/tmp', `shoal-${this.id}`)
  }

  log(line: string): void {
    this.opts.log(`[lab ${((performance.now() - this.t0) / 1000).toFixed(1).padStart(6)}s] ${line}`)
  }

  checkAbort(): void {
    if (this.opts.signal.aborted) throw new Error('lab aborted')
  }

  async sleep(ms: number): Promise<void> {
    this.checkAbort()
    await sleep(ms, undefined, { signal: this.opts.signal }).catch(() => {})
    this.checkAbort()
  }

  get topology(): Topology {
    if (this.topo === undefined) throw new Error('no topology')
    return this.topo
  }

  get probeOrThrow(): Probe {
    if (this.probe === undefined) throw new Error('no probe')
    return this.probe
  }

  /** Namespaces, probe and origin registry for up to `maxNodes` node hosts. */
  async setup(maxNodes: number): Promise<void> {
    for (const [bin, what] of [
      [REGISTRY_BIN, 'docker-registry (apt-get install docker-registry)'],
      [SHOAL_MAIN, 'the built daemon (npm run build)'],
    ] as const) {
      if (!existsSync(bin)) throw new Error(`${bin} missing: ${what}`)
    }
    await run(SKOPEO_BIN, ['--version']).catch(() => {
      throw new Error('skopeo missing (apt-get install skopeo)')
    })
    await mkdir(this.workDir, { recursive: true })
    this.log(
      `network ${this.id}: origin ${this.opts.originMbit} Mbit/s, ${maxNodes} node hosts ${this.opts.nodeMbit} Mbit/s (HTB, ${this.opts.qdisc}), ${SUBNET_PREFIX}.0/24 inside the namespaces only`,
    )
    this.topo = await createTopology({
      id: this.id,
      nodes: maxNodes,
      originMbit: this.opts.originMbit,
      nodeMbit: this.opts.nodeMbit,
      qdisc: this.opts.qdisc,
      created: this.namespaces,
    })
    this.checkAbort()
    const probe = this.procs.spawn('probe', 'ip', ['netns', 'exec', this.topo.switchNs, process.execPath, PROBE_MAIN], {
      pipe: true,
      logFile: join(this.workDir, 'probe.log'),
    })
    this.probe = new Probe(probe)
    await this.startOrigin()
  }

  private async startOrigin(): Promise<void> {
    const topo = this.topology
    const dir = join(this.workDir, 'origin')
    await mkdir(join(dir, 'data'), { recursive: true })
    const config = registryConfig({ addr: `0.0.0.0:${REGISTRY_PORT}`, root: join(dir, 'data') })
    await writeFile(join(dir, 'config.yml'), config)
    this.origin = this.procs.spawn(
      'origin',
      'ip',
      ['netns', 'exec', topo.origin.ns, REGISTRY_BIN, 'serve', join(dir, 'config.yml')],
      { logFile: join(dir, 'registry.log'), env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir } },
    )
    await this.waitHttp(`http://${ORIGIN_ADDR}:${REGISTRY_PORT}/v2/`, this.origin, 20_000)
  }

  /** Polls `url` through the probe until it answers 200; fails early when `proc` exits. */
  async waitHttp(url: string, proc: LabProc, timeoutMs: number): Promise<void> {
    const start = performance.now()
    let last = 'no answer'
    while (performance.now() - start < timeoutMs) {
      this.checkAbort()
      if (proc.exit !== undefined) {
        throw new Error(`${proc.name} exited (code ${proc.exit.code}) before ${url} answered:\n${tail(proc.logFile)}`)
      }
      try {
        const r = await this.probeOrThrow.get(url, 2000)
        if (r.status === 200) return
        last = `status ${r.status}`
      } catch (err) {
        last = err instanceof Error ? err.message : String(err)
      }
      await this.sleep(100)
    }
    throw new Error(`${proc.name}: ${url} not 200 within ${timeoutMs} ms (last: ${last}):\n${tail(proc.logFile)}`)
  }

  /** The image of `sizeMiB` (in repository `repo`), built and pushed to the origin once per lab. */
  async image(sizeMiB: number, repo = `lab/img-${sizeMiB}m`): Promise<PushedImage> {
    const have = this.images.get(repo)
    if (have !== undefined) return have
    const topo = this.topology
    const dir = join(this.workDir, `image-${repo.replaceAll('/', '-')}`)
    const started = performance.now()
    const image = await buildImage(dir, sizeMiB * MiB, this.opts.layers)
    this.checkAbort()
    const policy = join(this.workDir, 'policy.json')
    await writeFile(policy, POLICY_ACCEPT_ANYTHING)
    // Pushed from inside the origin host over its loopback: not through the shaped link.
    await run(
      'ip',
      [
        'netns',
        'exec',
        topo.origin.ns,
        SKOPEO_BIN,
        '--policy',
        policy,
        'copy',
        '--quiet',
        '--dest-tls-verify=false',
        '--dest-no-creds',
        '--preserve-digests',
        `oci:${dir}:${image.tag}`,
        `docker://127.0.0.1:${REGISTRY_PORT}/${repo}:${image.tag}`,
      ],
      120_000 + ((sizeMiB * MiB) / (10 * MiB)) * 1000,
    )
    await rm(join(dir, 'blobs'), { recursive: true, force: true })
    this.log(
      `image ${repo}:${image.tag}: ${image.layers.length} layers, ${(image.size / MiB).toFixed(1)} MiB, built and pushed in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    )
    const pushed = { image, repo }
    this.images.set(repo, pushed)
    return pushed
  }

  /** Bytes the origin host's interface has sent so far (its eth0 tx counter). */
  async originTx(): Promise<number> {
    const topo = this.topology
    const out = await run('ip', ['-n', topo.origin.ns, '-s', '-j', 'link', 'show', 'dev', 'eth0'], 10_000)
    const parsed = JSON.parse(out) as { stats64?: { tx?: { bytes?: number } } }[]
    const tx = parsed[0]?.stats64?.tx?.bytes
    if (tx === undefined) throw new Error('no tx counter on the origin eth0')
    return tx
  }

  /** Stops every process by PID, deletes every namespace, removes the work dir. Returns problems. */
  async teardown(): Promise<string[]> {
    if (this.tornDown) return []
    this.tornDown = true
    const problems: string[] = []
    await this.procs.stopAll(5000)
    for (const p of this.procs.running) problems.push(`process ${p.name} (PID ${p.pid}) did not exit`)
    problems.push(...(await deleteNamespaces(this.namespaces)))
    const left = (await listNamespaces().catch((): string[] => [])).filter((ns) => this.namespaces.includes(ns))
    for (const ns of left) problems.push(`namespace ${ns} still exists`)
    if (!this.opts.keep) await rm(this.workDir, { recursive: true, force: true, maxRetries: 3 }).catch(() => {})
    return problems
  }

  /** Synchronous last resort (process exit): SIGKILL what still runs. Namespaces need `ip`, see main. */
  killAllSync(): void {
    this.procs.killAllSync()
  }
}

/** The registries.conf of a client that reaches the origin only through `mirror`. */
export function mirrorRegistriesConf(mirror: string | undefined): string {
  if (mirror === undefined) {
    return `[[registry]]\nlocation = "${ORIGIN_ADDR}:${REGISTRY_PORT}"\ninsecure = true\n`
  }
  return [
    '[[registry]]',
    `prefix = "${ORIGIN_ADDR}:${DEAD_PORT}"`,
    `location = "${ORIGIN_ADDR}:${DEAD_PORT}"`,
    'insecure = true',
    '[[registry.mirror]]',
    `location = "${mirror}"`,
    'insecure = true',
    '',
  ].join('\n')
}

export type { Host }
export { registryConfig }
