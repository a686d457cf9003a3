/**
 * Helpers of the swarm tests (test/swarm/): Shoal daemons with the swarm on, as subprocesses
 * (killable with SIGKILL, optionally inside a network namespace) or in this process, blob pulls
 * over HTTP that hash what they receive, the admin endpoints (/status, /metrics), bounded waits,
 * and network namespaces for mDNS.
 *
 * Every subprocess started here is remembered: after hooks stop them by PID, and if the test
 * process exits first they are SIGKILLed (by PID) on its way out.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream, type WriteStream } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { type RawConfig, resolveConfig } from '../../src/config/config.js'
import { PIECE_SIZE_MIN } from '../../src/constants.js'
import { createDaemon, type Daemon } from '../../src/daemon.js'
import { createLogger, silentLogger } from '../../src/log.js'
import { SwarmNode } from '../../src/swarm/node.js'

export const MiB = 1024 * 1024
/** The daemon's piece size for blobs up to 1 GiB (src/constants.ts PIECE_SIZES). */
export const PIECE = PIECE_SIZE_MIN

const here = dirname(fileURLToPath(import.meta.url))
/** dist/test/helpers → dist/src/cli/main.js (SHOAL_SWARM_CLI: another build, for a post-mortem). */
export const CLI = process.env.SHOAL_SWARM_CLI ?? resolve(here, '../../src/cli/main.js')
/** The Node that runs the tests (Node 24 from the `node` devDependency). */
export const NODE = process.execPath

/** A delay that does not keep the process alive (for races against a bound). */
export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref())
}

export function sha256(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

// ---------------------------------------------------------------------------------------------
// temp dirs, ports, waits

/** A short temp dir under /tmp (unix socket paths and readable logs). */
export async function tempDir(prefix = 'shsw-'): Promise<string> {
  return mkdtemp(join('/tmp', prefix))
}

/** Removes a temp dir made by tempDir (kept when SHOAL_SWARM_KEEP=1, for a post-mortem); never throws. */
export async function removeDir(dir: string | undefined): Promise<void> {
  if (dir === undefined || !dir.startsWith('/tmp/')) return
  if (process.env.SHOAL_SWARM_KEEP === '1') {
    console.log(`kept ${dir}`)
    return
  }
  await rm(dir, { recursive: true, force: true, maxRetries: 3 }).catch(() => {})
}

/** A port on 127.0.0.1 that was free a moment ago. */
/**
 * A started libp2p swarm node on loopback (Noise, no mDNS) with its key in `dir`, bootstrapped to
 * `bootstrap` when given.
 */
export async function startSwarmNode(dir: string, name: string, bootstrap?: string): Promise<SwarmNode> {
  const node = new SwarmNode(
    {
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: bootstrap === undefined ? [] : [bootstrap],
      mdns: false,
      encryption: ['noise'],
      identityPath: join(dir, `${name}.key`),
      maxConnections: 50,
      bootstrapIntervalMs: 60_000,
    },
    { logger: silentLogger() },
  )
  await node.start()
  return node
}

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer()
    srv.unref()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      if (addr === null || typeof addr === 'string') {
        srv.close()
        reject(new Error('no port'))
        return
      }
      srv.close(() => resolvePort(addr.port))
    })
  })
}

/** Polls `fn` until it returns true; throws with `what` (and `detail()`) after `timeoutMs`. */
export async function waitFor(
  what: string,
  fn: () => boolean | Promise<boolean>,
  timeoutMs = 15_000,
  intervalMs = 100,
  detail?: () => string | Promise<string>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await fn()) return
    if (Date.now() >= deadline) {
      const extra = detail === undefined ? '' : `\n${await detail()}`
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${extra}`)
    }
    await sleep(intervalMs)
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP

export interface PullResult {
  status: number
  /** sha256 of the body received, `sha256:<hex>`. */
  digest: string
  bytes: number
  /** X-Shoal-Source of the response. */
  source: string | undefined
  /** Why the body did not complete (cut, timeout); undefined when it did. */
  error: string | undefined
  ms: number
}

/**
 * One GET on a fresh connection; the body is hashed as it arrives, never kept. Never rejects.
 */
export function pull(url: string, timeoutMs = 60_000, headers: Record<string, string> = {}): Promise<PullResult> {
  const started = Date.now()
  const u = new URL(url)
  return new Promise((resolvePull) => {
    const hash = createHash('sha256')
    let bytes = 0
    let status = 0
    let source: string | undefined
    let settled = false
    const finish = (error: string | undefined): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolvePull({ status, digest: `sha256:${hash.digest('hex')}`, bytes, source, error, ms: Date.now() - started })
    }
    const req = request(
      {
        host: u.hostname,
        port: Number(u.port),
        path: `${u.pathname}${u.search}`,
        method: 'GET',
        headers,
        agent: false,
      },
      (res) => {
        status = res.statusCode ?? 0
        const s = res.headers['x-shoal-source']
        source = Array.isArray(s) ? s[0] : s
        res.on('data', (chunk: Buffer) => {
          hash.update(chunk)
          bytes += chunk.length
        })
        res.on('end', () => finish(res.complete ? undefined : 'body cut'))
        res.on('error', (err) => finish(`response error: ${err.message}`))
        res.on('aborted', () => finish('aborted'))
      },
    )
    const timer = setTimeout(() => {
      req.destroy()
      finish(`timeout after ${timeoutMs} ms`)
    }, timeoutMs)
    req.on('error', (err) => finish(`request error: ${err.message}`))
    req.end()
  })
}

/** GET of a small body as text (undefined when the connection failed or timed out). */
export function getText(
  url: string,
  timeoutMs = 3_000,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string } | undefined> {
  const u = new URL(url)
  return new Promise((resolveGet) => {
    let done = false
    const finish = (v: { status: number; body: string } | undefined): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      resolveGet(v)
    }
    const req = request(
      {
        host: u.hostname,
        port: Number(u.port),
        path: `${u.pathname}${u.search}`,
        method: 'GET',
        headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => finish({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
        res.on('error', () => finish(undefined))
      },
    )
    const timer = setTimeout(() => {
      req.destroy()
      finish(undefined)
    }, timeoutMs)
    req.on('error', () => finish(undefined))
    req.end()
  })
}

/** Blob bytes by source, from the Prometheus text of /metrics (shoal_blob_bytes_total). */
export interface BlobBytes {
  origin: number
  peer: number
  cache: number
}

export function parseBlobBytes(metrics: string): BlobBytes {
  const out: BlobBytes = { origin: 0, peer: 0, cache: 0 }
  for (const line of metrics.split('\n')) {
    const m = /^shoal_blob_bytes_total\{source="(origin|peer|cache)"\}\s+(\S+)/.exec(line)
    if (m?.[1] !== undefined && m[2] !== undefined) out[m[1] as keyof BlobBytes] += Number(m[2])
  }
  return out
}

/** /status of a daemon. */
export interface Status {
  peerId?: string
  peers: number
  transfers: number
  peersBanned: number
  addrs?: string[]
}

function parseStatus(text: string): Status {
  const v = JSON.parse(text) as Partial<Status>
  if (typeof v.peers !== 'number' || typeof v.peersBanned !== 'number') throw new Error(`odd /status: ${text}`)
  return { peers: v.peers, peersBanned: v.peersBanned, transfers: v.transfers ?? 0, peerId: v.peerId, addrs: v.addrs }
}

// ---------------------------------------------------------------------------------------------
// daemons

/** What a swarm test needs of a daemon, subprocess or in-process. */
export interface SwarmDaemon {
  readonly name: string
  /** `http://127.0.0.1:PORT` of the /v2/ mirror. */
  readonly url: string
  readonly adminUrl: string
  readonly peerId: string
  /** libp2p listen addresses without /p2p/, e.g. `/ip4/127.0.0.1/tcp/4101`. */
  readonly p2pAddrs: string[]
  status(): Promise<Status>
  blobBytes(): Promise<BlobBytes>
  stop(): Promise<void>
  /** Log lines (or a note that there are none), for failure messages. */
  describe(maxChars?: number): string
}

export interface DaemonOptions {
  name: string
  dataDir: string
  upstream: string
  /** libp2p listen port (0 = any). */
  p2pPort?: number
  bootstrap?: string[]
  mdns?: boolean
  swarmKey?: string
  uploadRate?: string
  /** Extra environment (e.g. SHOAL_TEST_CORRUPT_PIECES=1). */
  env?: Record<string, string>
  /** Run inside this network namespace (`ip netns exec`). */
  netns?: string
  /** Fixed ports (inside a namespace nothing else listens). */
  listenPort?: number
  adminPort?: number
  logLevel?: 'info' | 'debug'
  /** How long to wait for readiness. */
  readyTimeoutMs?: number
}

const live = new Set<ChildProcess>()
let exitHook = false

function installExitHook(): void {
  if (exitHook) return
  exitHook = true
  process.on('exit', () => {
    for (const c of live) {
      if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) {
        try {
          process.kill(c.pid, 'SIGKILL')
        } catch {
          // gone
        }
      }
    }
  })
}

interface LogLine {
  msg?: string
  [k: string]: unknown
}

/** A daemon subprocess: `node dist/src/cli/main.js daemon …`, JSON log lines kept in memory and in a file. */
export class DaemonProcess implements SwarmDaemon {
  readonly name: string
  readonly logFile: string
  url = ''
  adminUrl = ''
  peerId = ''
  p2pAddrs: string[] = []
  readonly lines: LogLine[] = []
  private readonly raw: string[] = []
  private readonly child: ChildProcess
  private readonly log: WriteStream
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined
  readonly exited: Promise<void>
  private partial = ''
  readonly netns: string | undefined
  readonly opts: DaemonOptions

  private constructor(opts: DaemonOptions, adminPort: number, listenPort: number) {
    installExitHook()
    this.opts = opts
    this.name = opts.name
    this.netns = opts.netns
    this.logFile = join(dirname(opts.dataDir), `${opts.name}.log`)
    this.log = createWriteStream(this.logFile, { flags: 'a' })
    this.log.on('error', () => {})
    this.adminUrl = `http://127.0.0.1:${adminPort}`
    const args = [
      CLI,
      'daemon',
      '--listen',
      `127.0.0.1:${listenPort}`,
      '--data-dir',
      opts.dataDir,
      '--default-upstream',
      opts.upstream,
      '--log-level',
      opts.logLevel ?? (process.env.SHOAL_SWARM_LOG === 'debug' ? 'debug' : 'info'),
      '--admin-listen',
      `127.0.0.1:${adminPort}`,
      '--p2p-listen',
      `/ip4/127.0.0.1/tcp/${opts.p2pPort ?? 0}`,
    ]
    if (opts.mdns === true) args.push('--mdns')
    if (opts.swarmKey !== undefined) args.push('--swarm-key', opts.swarmKey)
    if (opts.uploadRate !== undefined) args.push('--upload-rate', opts.uploadRate)
    if (opts.bootstrap !== undefined && opts.bootstrap.length > 0) args.push('--bootstrap', ...opts.bootstrap)
    const env = { ...process.env, ...(opts.env ?? {}) }
    // Never inherit a corrupt switch by accident.
    if (opts.env?.SHOAL_TEST_CORRUPT_PIECES === undefined) delete env.SHOAL_TEST_CORRUPT_PIECES
    const [cmd, argv] = opts.netns === undefined ? [NODE, args] : ['ip', ['netns', 'exec', opts.netns, NODE, ...args]]
    this.child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env })
    if (this.child.pid !== undefined) live.add(this.child)
    this.log.write(`# ${cmd} ${argv.join(' ')}\n`)
    const onData = (chunk: Buffer): void => {
      this.log.write(chunk)
      const text = this.partial + chunk.toString('utf8')
      const parts = text.split('\n')
      this.partial = parts.pop() ?? ''
      for (const l of parts) this.onLine(l)
    }
    this.child.stdout?.on('data', onData)
    this.child.stderr?.on('data', onData)
    this.exited = new Promise((resolveExit) => {
      this.child.once('exit', (code, signal) => {
        live.delete(this.child)
        this.exitInfo = { code, signal }
        resolveExit()
      })
      this.child.once('error', (err) => {
        live.delete(this.child)
        this.raw.push(`[spawn error] ${err.message}`)
        this.exitInfo = { code: -1, signal: null }
        resolveExit()
      })
    })
  }

  get pid(): number {
    return this.child.pid ?? -1
  }

  get running(): boolean {
    return this.exitInfo === undefined && this.pid > 0
  }

  private onLine(line: string): void {
    if (line.trim() === '') return
    this.raw.push(line)
    if (this.raw.length > 5000) this.raw.shift()
    let v: LogLine
    try {
      v = JSON.parse(line) as LogLine
    } catch {
      return
    }
    this.lines.push(v)
    if (this.lines.length > 5000) this.lines.shift()
    if (v.msg === 'swarm started') {
      this.peerId = String(v.peerId)
      const addrs = Array.isArray(v.addrs) ? v.addrs.map(String) : []
      this.p2pAddrs = addrs.map((a) => a.replace(/\/p2p\/[^/]+$/, ''))
    }
    if (v.msg === 'shoal daemon ready' && typeof v.listen === 'string') this.url = `http://${v.listen}`
  }

  /** Whether a log line with this message (and, optionally, matching `pred`) was written. */
  hasLog(msg: string, pred: (l: LogLine) => boolean = () => true): boolean {
    return this.lines.some((l) => l.msg === msg && pred(l))
  }

  describe(maxChars = 6000): string {
    const state =
      this.exitInfo === undefined
        ? 'running'
        : `exited code=${String(this.exitInfo.code)} signal=${String(this.exitInfo.signal)}`
    const text = this.raw.join('\n')
    return `[${this.name} pid ${this.pid} ${state} log ${this.logFile}]\n${text.length > maxChars ? text.slice(-maxChars) : text}`
  }

  /**
   * Starts a daemon and waits until it logged 'shoal daemon ready' (and 'swarm started').
   * A port taken meanwhile by someone else: tried again with other ports (twice).
   */
  static async start(opts: DaemonOptions): Promise<DaemonProcess> {
    await mkdir(opts.dataDir, { recursive: true })
    let last: DaemonProcess | undefined
    for (let attempt = 0; attempt < 3; attempt++) {
      const adminPort = opts.adminPort ?? (opts.netns === undefined ? await freePort() : 9300 + attempt)
      const listenPort = opts.listenPort ?? 0
      const d = new DaemonProcess(opts, adminPort, listenPort)
      last = d
      try {
        await waitFor(
          `${opts.name} ready`,
          () => !d.running || (d.url !== '' && d.peerId !== ''),
          opts.readyTimeoutMs ?? 30_000,
          50,
        )
      } catch (err) {
        await d.stop()
        throw new Error(`${String(err)}\n${d.describe()}`)
      }
      if (d.running) return d
      const text = d.describe()
      await d.stop()
      if (!/EADDRINUSE/.test(text) || opts.adminPort !== undefined) throw new Error(`${opts.name} exited\n${text}`)
    }
    throw new Error(`${opts.name} could not start\n${last?.describe() ?? ''}`)
  }

  /** GET on the admin listener (from inside the namespace when the daemon runs in one). */
  async admin(path: string, timeoutMs = 3_000): Promise<{ status: number; body: string } | undefined> {
    const url = `${this.adminUrl}${path}`
    if (this.netns === undefined) return getText(url, timeoutMs)
    return new Promise((resolveAdmin) => {
      execFile(
        'ip',
        [
          'netns',
          'exec',
          this.netns as string,
          'curl',
          '-sS',
          '--max-time',
          String(timeoutMs / 1000),
          '-w',
          '\n%{http_code}',
          url,
        ],
        { timeout: timeoutMs + 2_000 },
        (err, stdout) => {
          if (err !== null) {
            resolveAdmin(undefined)
            return
          }
          const i = stdout.lastIndexOf('\n')
          resolveAdmin({ status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) })
        },
      )
    })
  }

  async status(): Promise<Status> {
    const r = await this.admin('/status')
    if (r === undefined || r.status !== 200) throw new Error(`${this.name}: /status failed (${r?.status})`)
    return parseStatus(r.body)
  }

  async blobBytes(): Promise<BlobBytes> {
    const r = await this.admin('/metrics')
    if (r === undefined || r.status !== 200) throw new Error(`${this.name}: /metrics failed (${r?.status})`)
    return parseBlobBytes(r.body)
  }

  /** SIGKILL by PID; resolves once it exited (bounded). */
  async kill9(): Promise<void> {
    if (this.running) {
      try {
        process.kill(this.pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
    await Promise.race([this.exited, delay(5_000)])
  }

  /** SIGTERM by PID, SIGKILL after `graceMs`; bounded; never throws. */
  async stop(graceMs = 8_000): Promise<void> {
    if (this.running) {
      try {
        process.kill(this.pid, 'SIGTERM')
      } catch {
        // gone
      }
      const t = await Promise.race([this.exited.then(() => true), delay(graceMs).then(() => false)])
      if (!t) await this.kill9()
    }
    if (!this.log.closed && !this.log.destroyed) await new Promise<void>((r) => this.log.end(() => r()))
  }
}

export interface InProcessOptions {
  name: string
  dataDir: string
  upstream: string
  bootstrap?: string[]
  corruptServedPieces?: boolean
  swarmKey?: string
  /** Upload to peers at most this fast, e.g. '8MiB/s'. */
  uploadRate?: string
}

/** A daemon in this process (on ports 0), for the in-process API `createDaemon`. */
export class InProcessDaemon implements SwarmDaemon {
  private stopped = false

  private constructor(
    readonly name: string,
    readonly daemon: Daemon,
  ) {}

  static async start(opts: InProcessOptions): Promise<InProcessDaemon> {
    const flags: RawConfig = {
      listen: '127.0.0.1:0',
      dataDir: opts.dataDir,
      defaultUpstream: opts.upstream,
      p2pListen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: opts.bootstrap ?? [],
      adminListen: '127.0.0.1:0',
      logLevel: 'silent',
    }
    if (opts.swarmKey !== undefined) flags.swarmKey = opts.swarmKey
    if (opts.uploadRate !== undefined) flags.uploadRate = opts.uploadRate
    const config = resolveConfig({ flags })
    const level = process.env.SHOAL_TEST_LOG
    const logger =
      level === 'debug' || level === 'info' || level === 'trace'
        ? createLogger(level, process.stderr).child({ daemon: opts.name })
        : silentLogger()
    const daemon = createDaemon(config, { logger }, { corruptServedPieces: opts.corruptServedPieces === true })
    await daemon.start()
    return new InProcessDaemon(opts.name, daemon)
  }

  get url(): string {
    return this.daemon.url()
  }

  get adminUrl(): string {
    const u = this.daemon.adminUrl()
    if (u === undefined) throw new Error('no admin listener')
    return u
  }

  get peerId(): string {
    return this.daemon.swarmInfo()?.peerId ?? ''
  }

  get p2pAddrs(): string[] {
    return (this.daemon.swarmInfo()?.addrs ?? []).map((a) => a.replace(/\/p2p\/[^/]+$/, ''))
  }

  async status(): Promise<Status> {
    const r = await getText(`${this.adminUrl}/status`)
    if (r === undefined || r.status !== 200) throw new Error(`${this.name}: /status failed`)
    return parseStatus(r.body)
  }

  async blobBytes(): Promise<BlobBytes> {
    const r = await getText(`${this.adminUrl}/metrics`)
    if (r === undefined || r.status !== 200) throw new Error(`${this.name}: /metrics failed`)
    return parseBlobBytes(r.body)
  }

  describe(): string {
    return `[${this.name} in-process; SHOAL_TEST_LOG=debug shows its log]`
  }

  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    await Promise.race([this.daemon.stop().catch(() => {}), delay(15_000)])
  }
}

/** Stops every daemon given, in parallel; never throws. */
export async function stopAll(daemons: ReadonlyArray<SwarmDaemon | undefined>): Promise<void> {
  await Promise.all(daemons.map((d) => d?.stop().catch(() => {})))
}

/** Waits until every daemon has at least `n` connected peers. */
export async function waitForPeers(daemons: readonly SwarmDaemon[], n: number, timeoutMs = 20_000): Promise<void> {
  const last = new Map<string, number>()
  await waitFor(
    `every daemon connected to ≥ ${n} peers`,
    async () => {
      const counts = await Promise.all(
        daemons.map((d) =>
          d
            .status()
            .then((s) => s.peers)
            .catch(() => -1),
        ),
      )
      for (const [i, c] of counts.entries()) last.set(daemons[i]?.name ?? String(i), c)
      return counts.every((c) => c >= n)
    },
    timeoutMs,
    150,
    () => `peers: ${JSON.stringify(Object.fromEntries(last))}`,
  )
}

/**
 * The daemon's blob bytes once origin + peer reach `atLeast`: the counters of a blob's last piece
 * move when the blob is committed to the store, a moment after its client got the last byte.
 * Bounded: after `timeoutMs` the current figures are returned (the assertions then say what is off).
 */
export async function settledBlobBytes(d: SwarmDaemon, atLeast: number, timeoutMs = 10_000): Promise<BlobBytes> {
  let last = await d.blobBytes()
  const deadline = Date.now() + timeoutMs
  while (last.origin + last.peer < atLeast && Date.now() < deadline) {
    await sleep(100)
    last = await d.blobBytes()
  }
  return last
}

/** Sum of blob bytes by source over some daemons. */
export async function sumBlobBytes(daemons: readonly SwarmDaemon[]): Promise<BlobBytes> {
  const all = await Promise.all(daemons.map((d) => d.blobBytes()))
  return all.reduce((a, b) => ({ origin: a.origin + b.origin, peer: a.peer + b.peer, cache: a.cache + b.cache }), {
    origin: 0,
    peer: 0,
    cache: 0,
  })
}

/** `shoal keygen -o FILE` with the CLI. */
export async function keygen(file: string): Promise<void> {
  await run(NODE, [CLI, 'keygen', '-o', file], 20_000)
}

/** Runs a command to completion (bounded); rejects on a non-zero exit. */
export function run(cmd: string, args: readonly string[], timeoutMs = 15_000): Promise<string> {
  return new Promise((resolveRun, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`))
      else resolveRun(stdout)
    })
  })
}

/** A helper process (not a daemon) started by a test, stopped by PID. */
export class Helper {
  private readonly child: ChildProcess
  private readonly out: string[] = []
  private done = false
  readonly exited: Promise<void>

  constructor(
    readonly name: string,
    cmd: string,
    args: readonly string[],
  ) {
    installExitHook()
    this.child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    if (this.child.pid !== undefined) live.add(this.child)
    const onData = (c: Buffer): void => {
      this.out.push(c.toString('utf8'))
    }
    this.child.stdout?.on('data', onData)
    this.child.stderr?.on('data', onData)
    this.exited = new Promise((r) => {
      const fin = (): void => {
        this.done = true
        live.delete(this.child)
        r()
      }
      this.child.once('exit', fin)
      this.child.once('error', (err) => {
        this.out.push(`[spawn error] ${err.message}`)
        fin()
      })
    })
  }

  get pid(): number {
    return this.child.pid ?? -1
  }

  get running(): boolean {
    return !this.done && this.pid > 0
  }

  output(): string {
    return this.out.join('')
  }

  /** SIGTERM by PID, SIGKILL after 3 s; bounded; never throws. */
  async stop(): Promise<void> {
    for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
      if (!this.running) return
      try {
        process.kill(this.pid, sig)
      } catch {
        return
      }
      await Promise.race([this.exited, delay(3_000)])
    }
  }
}

/**
 * A TCP relay on 127.0.0.1 that holds every chunk `delayMs` before passing it on, both ways: a
 * slow (high-latency) link to `targetPort` without netem.
 */
export class DelayRelay {
  private constructor(
    private readonly server: Server,
    private readonly sockets: Set<Socket>,
    readonly port: number,
  ) {}

  static async start(targetPort: number, delayMs: number): Promise<DelayRelay> {
    const sockets = new Set<Socket>()
    const server = createServer((client) => {
      const upstream = connect(targetPort, '127.0.0.1')
      const pipeDelayed = (from: Socket, to: Socket): void => {
        sockets.add(from)
        // Equal delays keep the chunks in order (timers of one duration fire in creation order).
        from.on('data', (chunk: Buffer) => {
          setTimeout(() => {
            if (!to.destroyed) to.write(chunk)
          }, delayMs)
        })
        from.on('end', () => setTimeout(() => to.end(), delayMs))
        from.on('error', () => {})
        from.on('close', () => {
          sockets.delete(from)
          setTimeout(() => to.destroy(), delayMs + 10)
        })
      }
      pipeDelayed(client, upstream)
      pipeDelayed(upstream, client)
    })
    await new Promise<void>((r, j) => {
      server.once('error', j)
      server.listen(0, '127.0.0.1', () => r())
    })
    const addr = server.address()
    if (addr === null || typeof addr === 'string') throw new Error('relay has no port')
    return new DelayRelay(server, sockets, addr.port)
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((r) => this.server.close(() => r()))
  }
}

// ---------------------------------------------------------------------------------------------
// network namespaces

/** A network namespace with only loopback, up and multicast-capable (for mDNS). */
export class Netns {
  private constructor(readonly name: string) {}

  static async create(prefix = 'shoal-mdns'): Promise<Netns> {
    const name = `${prefix}-${randomBytes(4).toString('hex')}`
    await run('ip', ['netns', 'add', name])
    const ns = new Netns(name)
    try {
      await run('ip', ['-n', name, 'link', 'set', 'lo', 'up'])
      await run('ip', ['-n', name, 'link', 'set', 'lo', 'multicast', 'on'])
      await run('ip', ['-n', name, 'route', 'add', '224.0.0.0/4', 'dev', 'lo'])
    } catch (err) {
      await ns.delete()
      throw err
    }
    return ns
  }

  /** `/etc/netns/NAME/resolv.conf`: what `ip netns exec` mounts over /etc/resolv.conf inside. */
  async setResolver(nameserver: string): Promise<void> {
    const dir = join('/etc/netns', this.name)
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'resolv.conf'), `nameserver ${nameserver}\noptions timeout:1 attempts:2\n`)
  }

  /** A command inside the namespace, to completion (bounded). */
  exec(args: readonly string[], timeoutMs = 10_000): Promise<string> {
    return run('ip', ['netns', 'exec', this.name, ...args], timeoutMs)
  }

  /** Deletes the namespace (stop the processes inside by PID first); never throws. */
  async delete(): Promise<void> {
    await run('ip', ['netns', 'del', this.name]).catch(() => {})
    await rm(join('/etc/netns', this.name), { recursive: true, force: true }).catch(() => {})
  }
}
