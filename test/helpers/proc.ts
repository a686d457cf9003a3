/**
 * Child processes for the end-to-end tests: start one with its output kept in a ring buffer and a
 * log file, wait for an HTTP endpoint with a bounded poll, stop it by PID (SIGTERM, then SIGKILL
 * after a bound), run a command to completion with a time bound, and find free loopback ports.
 *
 * Every process started here is also remembered so that a test run that dies before its `after`
 * hooks still SIGKILLs what it started (by PID) when node exits.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createWriteStream, type WriteStream } from 'node:fs'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

/** Keeps the last `capacity` bytes written to it. */
export class RingBuffer {
  private readonly chunks: Buffer[] = []
  private bytes = 0

  constructor(private readonly capacity = 256 * 1024) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk)
    this.bytes += chunk.length
    while (this.bytes > this.capacity && this.chunks.length > 1) {
      const first = this.chunks.shift()
      if (first !== undefined) this.bytes -= first.length
    }
  }

  /** The kept text, at most `maxChars` characters from its end. */
  text(maxChars = this.capacity): string {
    const s = Buffer.concat(this.chunks).toString('utf8')
    return s.length > maxChars ? s.slice(s.length - maxChars) : s
  }
}

/**
 * A short temp dir under /tmp (unix socket paths must stay under ~100 characters, so never
 * os.tmpdir() with a long TMPDIR).
 */
export async function shortTempDir(prefix = 'sh-'): Promise<string> {
  return mkdtemp(join('/tmp', prefix))
}

/** Removes a temp dir made by shortTempDir; never throws. */
export async function removeTempDir(dir: string | undefined): Promise<void> {
  if (dir === undefined || !dir.startsWith('/tmp/')) return
  await rm(dir, { recursive: true, force: true, maxRetries: 3 }).catch(() => {})
}

/**
 * Reads a log file once it stopped growing for `quietMs` (bounded by `maxMs`): a process's last
 * lines travel through a pipe and a write stream before they are in the file.
 */
export async function readSettled(path: string, quietMs = 150, maxMs = 3_000): Promise<string> {
  const deadline = Date.now() + maxMs
  let last = -1
  for (;;) {
    const size = await stat(path).then(
      (st) => st.size,
      () => 0,
    )
    if (size === last || Date.now() >= deadline) break
    last = size
    await sleep(quietMs)
  }
  return readFile(path, 'utf8').catch(() => '')
}

/** A port on 127.0.0.1 that was free a moment ago (listen on port 0, read it, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
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
      const port = addr.port
      srv.close(() => resolve(port))
    })
  })
}

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** Where the combined stdout+stderr goes (besides the ring buffer). */
  logFile?: string
  /** Bytes of output kept in memory. */
  ringBytes?: number
}

const live = new Set<ChildProcess>()
let exitHookInstalled = false

function killLive(): void {
  for (const child of live) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }
}

/**
 * Whatever happens to the test process (normal exit, or the runner's SIGTERM/SIGINT on a
 * timeout), the processes it started are killed by PID.
 */
function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', killLive)
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      killLive()
      process.exit(sig === 'SIGINT' ? 130 : 143)
    })
  }
}

/** A running child process. */
export class Proc {
  readonly name: string
  readonly pid: number
  readonly logFile: string | undefined
  readonly exited: Promise<Exit>
  private readonly ring: RingBuffer
  private readonly log: WriteStream | undefined
  private exit: Exit | undefined
  private readonly listeners = new Set<(chunk: Buffer) => void>()

  constructor(name: string, command: string, args: readonly string[], opts: StartOptions = {}) {
    installExitHook()
    this.name = name
    this.logFile = opts.logFile
    this.ring = new RingBuffer(opts.ringBytes)
    this.log = opts.logFile === undefined ? undefined : createWriteStream(opts.logFile, { flags: 'a' })
    // The log stream must never take the test process down.
    this.log?.on('error', () => {})
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const onData = (chunk: Buffer): void => {
      this.ring.push(chunk)
      this.log?.write(chunk)
      for (const l of this.listeners) l(chunk)
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    this.exited = new Promise<Exit>((resolve) => {
      child.once('exit', (code, signal) => {
        live.delete(child)
        this.exit = { code, signal }
        resolve(this.exit)
      })
      child.once('error', (err) => {
        live.delete(child)
        onData(Buffer.from(`\n[spawn error] ${err.message}\n`))
        this.exit = { code: -1, signal: null }
        resolve(this.exit)
      })
    })
    if (child.pid === undefined) {
      // spawn failed synchronously (ENOENT is reported through 'error'); keep a dummy PID
      this.pid = -1
    } else {
      this.pid = child.pid
      live.add(child)
    }
  }

  /** Whether the process has exited (and how). */
  get exitStatus(): Exit | undefined {
    return this.exit
  }

  get running(): boolean {
    return this.exit === undefined && this.pid > 0
  }

  /** The last `maxChars` characters of its output. */
  output(maxChars = 8000): string {
    return this.ring.text(maxChars)
  }

  /** Calls `fn` with every later chunk of output; returns an unsubscribe function. */
  onOutput(fn: (chunk: Buffer) => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  /** Sends a signal by PID (no-op when it already exited). */
  signal(sig: NodeJS.Signals): void {
    if (!this.running) return
    try {
      process.kill(this.pid, sig)
    } catch {
      // exited in between
    }
  }

  /**
   * SIGTERM by PID, then SIGKILL when it has not exited after `graceMs`. Resolves once it exited
   * (bounded: gives up waiting 5 s after the SIGKILL).
   */
  async stop(graceMs = 5_000): Promise<Exit | undefined> {
    if (this.running) {
      this.signal('SIGTERM')
      const termed = await Promise.race([this.exited, sleep(graceMs, undefined, { ref: false })])
      if (termed === undefined) {
        this.signal('SIGKILL')
        await Promise.race([this.exited, sleep(5_000, undefined, { ref: false })])
      }
    }
    await this.closeLog()
    return this.exit
  }

  private async closeLog(): Promise<void> {
    const log = this.log
    if (log === undefined || log.closed || log.destroyed) return
    await new Promise<void>((resolve) => log.end(() => resolve()))
  }

  describe(maxChars = 4000): string {
    const state =
      this.exit === undefined ? 'running' : `exited code=${String(this.exit.code)} signal=${String(this.exit.signal)}`
    return `[${this.name} pid ${this.pid} ${state}${this.logFile === undefined ? '' : ` log ${this.logFile}`}]\n${this.output(maxChars)}`
  }
}

export function startProcess(name: string, command: string, args: readonly string[], opts: StartOptions = {}): Proc {
  return new Proc(name, command, args, opts)
}

/** Stops every given process by PID, in parallel; never throws. */
export async function stopAll(procs: ReadonlyArray<{ stop(): Promise<unknown> } | undefined>): Promise<void> {
  await Promise.all(procs.map((p) => p?.stop().catch(() => undefined)))
}

/** Status of one GET (undefined when the connection failed); the body is discarded. */
export function httpStatus(
  url: string,
  timeoutMs = 2_000,
  headers: Record<string, string> = {},
): Promise<number | undefined> {
  return new Promise((resolve) => {
    const u = new URL(url)
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
        res.resume()
        res.on('end', () => resolve(res.statusCode))
        res.on('error', () => resolve(res.statusCode))
      },
    )
    req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')))
    req.on('error', () => resolve(undefined))
    req.end()
  })
}

export interface WaitHttpOptions {
  timeoutMs?: number
  intervalMs?: number
  /** Which statuses count as ready (default: 200). */
  ready?: (status: number) => boolean
  /** Stop waiting as soon as this process exits. */
  proc?: Proc
}

/** Polls `url` until it answers a ready status; throws (with the process's output) after the bound. */
export async function waitForHttp(url: string, opts: WaitHttpOptions = {}): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 15_000
  const intervalMs = opts.intervalMs ?? 50
  const ready = opts.ready ?? ((s: number) => s === 200)
  const deadline = Date.now() + timeoutMs
  let last: number | undefined
  for (;;) {
    if (opts.proc !== undefined && !opts.proc.running) {
      throw new Error(`${opts.proc.name} exited while waiting for ${url}\n${opts.proc.describe()}`)
    }
    last = await httpStatus(url, Math.min(2_000, timeoutMs))
    if (last !== undefined && ready(last)) return
    if (Date.now() >= deadline) break
    await sleep(intervalMs)
  }
  const tail = opts.proc === undefined ? '' : `\n${opts.proc.describe()}`
  throw new Error(`${url} not ready after ${timeoutMs} ms (last status ${String(last)})${tail}`)
}

/** Polls `fn` until it returns true; throws with `what` after the bound. */
export async function waitUntil(
  what: string,
  fn: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await fn()) return
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(intervalMs)
  }
}

export interface RunResult {
  command: string
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  timedOut: boolean
  ms: number
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** Hard bound: the process is SIGKILLed (by PID) after it (default 60 s). */
  timeoutMs?: number
  /** Characters of stdout/stderr kept (from the end). */
  maxOutput?: number
}

/** Runs a command to completion with a time bound. Never rejects for a non-zero exit. */
export async function run(command: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000
  const started = Date.now()
  const out = new RingBuffer(opts.maxOutput ?? 1024 * 1024)
  const err = new RingBuffer(opts.maxOutput ?? 1024 * 1024)
  installExitHook()
  const child = spawn(command, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
  if (child.pid !== undefined) live.add(child)
  child.stdout.on('data', (c: Buffer) => out.push(c))
  child.stderr.on('data', (c: Buffer) => err.push(c))
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    if (child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
  }, timeoutMs)
  const exit = await new Promise<Exit>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal }))
    // A grandchild that keeps the pipes open must not hold us past the exit: 2 s for the rest
    // of the output, then go on.
    child.once('exit', (code, signal) => {
      setTimeout(() => resolve({ code, signal }), 2_000).unref()
    })
    child.once('error', (e) => {
      err.push(Buffer.from(`[spawn error] ${e.message}`))
      resolve({ code: -1, signal: null })
    })
  })
  clearTimeout(timer)
  live.delete(child)
  return {
    command: [command, ...args].join(' '),
    code: exit.code,
    signal: exit.signal,
    stdout: out.text(),
    stderr: err.text(),
    timedOut,
    ms: Date.now() - started,
  }
}

export function describeRun(r: RunResult, maxChars = 6000): string {
  const tail = (s: string): string => (s.length > maxChars ? `…${s.slice(s.length - maxChars)}` : s)
  return `$ ${r.command}\nexit ${String(r.code)} signal ${String(r.signal)}${r.timedOut ? ' (TIMED OUT)' : ''} after ${r.ms} ms\n--- stdout\n${tail(r.stdout)}\n--- stderr\n${tail(r.stderr)}`
}

/** Runs a command and throws (with its output) unless it exits 0. */
export async function runOk(command: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(command, args, opts)
  if (r.code !== 0) throw new Error(`command failed\n${describeRun(r)}`)
  return r
}
