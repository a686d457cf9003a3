/**
 * Small helpers of the integration tests: an in-process daemon on port 0, a raw HTTP client that
 * reports cut connections, bounded polling.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { type IncomingHttpHeaders, request } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { type RawConfig, resolveConfig } from '../../src/config/config.js'
import { PIECE_SIZE_MIN } from '../../src/constants.js'
import { createDaemon, type Daemon } from '../../src/daemon.js'
import { createLogger, silentLogger } from '../../src/log.js'

export function sha256(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

export const MiB = 1024 * 1024
/** The daemon's piece size for blobs up to 1 GiB (src/constants.ts PIECE_SIZES). */
export const PIECE = PIECE_SIZE_MIN

/** A fresh directory under the OS temp dir; the data dir of a daemon lives inside it. */
export async function tempRoot(prefix = 'shoal-it-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix))
}

export interface RegistryEntry {
  host: string
  url: string
  username?: string
  password?: string
}

export interface ShoalOptions {
  upstream: string
  /** Defaults to `<root>/data` of a fresh temp root. */
  dataDir?: string
  tagTtl?: string
  registries?: RegistryEntry[]
}

export interface Shoal {
  readonly daemon: Daemon
  readonly url: string
  readonly dataDir: string
  stop(): Promise<void>
}

/** Starts a daemon in this process on 127.0.0.1:0. SHOAL_TEST_LOG=debug shows its log on stderr. */
export async function startShoal(opts: ShoalOptions): Promise<Shoal> {
  const dataDir = opts.dataDir ?? join(await tempRoot(), 'data')
  const file: RawConfig = {
    listen: '127.0.0.1:0',
    dataDir,
    defaultUpstream: opts.upstream,
    logLevel: 'silent',
  }
  if (opts.tagTtl !== undefined) file.tagTtl = opts.tagTtl
  if (opts.registries !== undefined) file.registries = opts.registries
  const config = resolveConfig({ file })
  const level = process.env.SHOAL_TEST_LOG
  const logger =
    level === 'debug' || level === 'info' || level === 'trace' ? createLogger(level, process.stderr) : silentLogger()
  const daemon = createDaemon(config, { logger })
  await daemon.start()
  let stopped = false
  return {
    daemon,
    url: daemon.url(),
    dataDir,
    async stop() {
      if (stopped) return
      stopped = true
      await daemon.stop()
    },
  }
}

export interface HttpResult {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
  /** The response ended normally with every announced byte. */
  complete: boolean
  /** Why it did not complete (a cut connection, a timeout). */
  error: string | undefined
  /** ms from the request to the first body byte (undefined when none came). */
  firstByteMs: number | undefined
  ms: number
}

export interface HttpOptions {
  method?: string
  headers?: Record<string, string>
  body?: Buffer | string
  /** Hard bound of the whole exchange (default 20 s). */
  timeoutMs?: number
  /** Called once with the first body chunk. */
  onFirstByte?: () => void
  /** Hang up (destroy the socket) once this many body bytes arrived. */
  hangUpAfter?: number
}

/**
 * One request on a fresh connection. `path` is sent verbatim (no normalisation), so `..` and
 * odd bytes reach the daemon as written. Never rejects: failures are in `error`.
 */
export function http(base: string, path: string, opts: HttpOptions = {}): Promise<HttpResult> {
  const u = new URL(base)
  const started = Date.now()
  return new Promise((resolvePromise) => {
    let settled = false
    const chunks: Buffer[] = []
    let received = 0
    let firstByteMs: number | undefined
    let status = 0
    let resHeaders: IncomingHttpHeaders = {}
    let ended = false
    const finish = (error: string | undefined): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolvePromise({
        status,
        headers: resHeaders,
        body: Buffer.concat(chunks),
        complete: error === undefined && ended,
        error,
        firstByteMs,
        ms: Date.now() - started,
      })
    }
    const headers: Record<string, string | number> = { ...opts.headers }
    if (opts.body !== undefined) headers['content-length'] = Buffer.byteLength(opts.body)
    const req = request({
      host: u.hostname,
      port: Number(u.port),
      path,
      method: opts.method ?? 'GET',
      headers,
      agent: false,
    })
    const timer = setTimeout(() => {
      req.destroy()
      finish('timeout')
    }, opts.timeoutMs ?? 20_000)
    req.on('error', (err) => finish(`request error: ${err.message}`))
    req.on('response', (res) => {
      status = res.statusCode ?? 0
      resHeaders = res.headers
      res.on('data', (chunk: Buffer) => {
        if (firstByteMs === undefined) {
          firstByteMs = Date.now() - started
          opts.onFirstByte?.()
        }
        chunks.push(chunk)
        received += chunk.length
        if (opts.hangUpAfter !== undefined && received >= opts.hangUpAfter) {
          req.destroy()
          finish('hung up by the test')
        }
      })
      res.on('end', () => {
        ended = true
        const len = resHeaders['content-length']
        if (len !== undefined && opts.method !== 'HEAD' && Number(len) !== received) {
          finish(`short body: ${received} of ${len}`)
        } else finish(undefined)
      })
      res.on('error', (err) => finish(`response error: ${err.message}`))
      res.on('close', () => {
        if (!ended) finish('connection closed mid-body')
      })
    })
    req.end(opts.body)
  })
}

/** The OCI error code of a JSON error body (asserts the shape). */
export function ociErrorCode(body: Buffer): string {
  const doc = JSON.parse(body.toString('utf8')) as { errors?: { code?: unknown; message?: unknown }[] }
  if (!Array.isArray(doc.errors) || doc.errors.length === 0) throw new Error(`not an OCI error body: ${body}`)
  const first = doc.errors[0]
  if (typeof first?.code !== 'string' || typeof first.message !== 'string') {
    throw new Error(`not an OCI error body: ${body}`)
  }
  return first.code
}

/** Polls `predicate` every `intervalMs` until it holds; throws after `timeoutMs`. */
export async function waitFor(
  what: string,
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  intervalMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(intervalMs)
  }
}

/** Every file (not directory) below `dir`, as paths relative to it. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = []
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  for (const e of entries) {
    if (e.isFile()) out.push(join(e.parentPath, e.name).slice(dir.length + 1))
  }
  return out.sort()
}

export async function removeDir(dir: string | undefined): Promise<void> {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
}

/** `Basic` Authorization header value. */
export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
}

// ---- the daemon as a subprocess (for kill -9) ----

const HERE = dirname(fileURLToPath(import.meta.url))
/** dist/src/cli/main.js, seen from dist/test/integration/. */
export const CLI = resolve(HERE, '../../src/cli/main.js')

export interface ShoalProcess {
  readonly child: ChildProcess
  readonly url: string
  /** SIGKILL and wait for the exit (bounded). */
  kill9(): Promise<void>
}

/** Picks a free port by binding 0 and closing; the daemon binds it right after. */
async function freePort(): Promise<number> {
  const { createServer } = await import('node:net')
  return new Promise((resolvePort, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      const port = typeof a === 'object' && a !== null ? a.port : 0
      s.close(() => resolvePort(port))
    })
  })
}

export async function spawnShoal(opts: { upstream: string; dataDir: string }): Promise<ShoalProcess> {
  const port = await freePort()
  const child = spawn(
    process.execPath,
    [
      CLI,
      'daemon',
      '--listen',
      `127.0.0.1:${port}`,
      '--data-dir',
      opts.dataDir,
      '--default-upstream',
      opts.upstream,
      '--log-level',
      'warn',
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  )
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  const url = `http://127.0.0.1:${port}`
  const kill9 = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGKILL')
    await Promise.race([exited, sleep(5_000, undefined, { ref: false })])
  }
  try {
    await waitFor(
      'the daemon subprocess to answer /v2/',
      async () => {
        if (child.exitCode !== null) throw new Error(`daemon exited with ${child.exitCode}`)
        const r = await http(url, '/v2/', { timeoutMs: 1_000 })
        return r.status === 200
      },
      15_000,
      50,
    )
  } catch (err) {
    await kill9()
    throw err
  }
  return { child, url, kill9 }
}
