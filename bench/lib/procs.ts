/**
 * Child processes the benchmark starts (docker-registry, the Shoal daemon): spawn with output to a
 * log file, stop by PID (SIGTERM, then SIGKILL after a bound), memory readings from /proc.
 * Only processes started here are ever signalled.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'

export interface Managed {
  readonly name: string
  readonly pid: number
  readonly logFile: string
  readonly child: ChildProcess
  /** Resolves when the process has exited (with its code or signal). */
  readonly exited: Promise<string>
  hasExited(): boolean
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv
  cwd?: string
  logFile: string
  /** 'pipe': stdin and stdout are pipes (for scripts driven by the bench); stderr still goes to the log. */
  stdio?: 'log' | 'pipe'
}

const live = new Set<Managed>()

export function startProcess(name: string, command: string, args: string[], opts: StartOptions): Managed {
  const fd = openSync(opts.logFile, 'a')
  let child: ChildProcess
  try {
    child = spawn(command, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: opts.stdio === 'pipe' ? ['pipe', 'pipe', fd] : ['ignore', fd, fd],
      detached: false,
    })
  } finally {
    closeSync(fd)
  }
  const pid = child.pid
  if (pid === undefined) throw new Error(`${name}: spawn of ${command} failed`)
  let done = false
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => {
      done = true
      resolve(signal === null ? `code ${code}` : `signal ${signal}`)
    })
    child.once('error', (err) => {
      done = true
      resolve(`spawn error: ${err.message}`)
    })
  })
  const m: Managed = { name, pid, logFile: opts.logFile, child, exited, hasExited: () => done }
  live.add(m)
  void exited.then(() => live.delete(m))
  return m
}

/** SIGTERM, wait up to `graceMs`, then SIGKILL and wait up to 3 s more. Returns how it ended. */
export async function stopProcess(m: Managed, graceMs = 8000): Promise<string> {
  if (m.hasExited()) return m.exited
  signal(m.pid, 'SIGTERM')
  const first = await Promise.race([m.exited, sleep(graceMs).then(() => undefined)])
  if (first !== undefined) return first
  signal(m.pid, 'SIGKILL')
  const second = await Promise.race([m.exited, sleep(3000).then(() => undefined)])
  return second === undefined ? 'did not exit after SIGKILL' : `${second} (after SIGKILL)`
}

export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((m) => stopProcess(m)))
}

/** Last resort on process exit: SIGKILL whatever we started and is still running. */
export function killAllSync(): void {
  for (const m of live) if (!m.hasExited()) signal(m.pid, 'SIGKILL')
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch {
    // already gone
  }
}

export function tailLog(m: Managed, lines = 20): string {
  try {
    const text = readFileSync(m.logFile, 'utf8')
    return text.trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

export interface MemStatus {
  rssKiB: number
  hwmKiB: number
}

/** VmRSS and VmHWM of a live process, or undefined when it is gone. */
export function readMem(pid: number): MemStatus | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return undefined
  }
  const field = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)
    return m?.[1] === undefined ? 0 : Number(m[1])
  }
  return { rssKiB: field('VmRSS'), hwmKiB: field('VmHWM') }
}

/** Samples VmRSS every `intervalMs` until stopped; `finish()` also reads VmHWM one last time. */
export class RssSampler {
  private maxRssKiB = 0
  private samples = 0
  private lastHwmKiB = 0
  private firstRssKiB: number | undefined
  private segmentMaxKiB = 0
  private readonly timer: NodeJS.Timeout

  constructor(
    private readonly pid: number,
    intervalMs = 100,
  ) {
    this.sample()
    this.timer = setInterval(() => this.sample(), intervalMs)
    this.timer.unref()
  }

  private sample(): void {
    const m = readMem(this.pid)
    if (m === undefined) return
    this.samples++
    if (this.firstRssKiB === undefined) this.firstRssKiB = m.rssKiB
    if (m.rssKiB > this.maxRssKiB) this.maxRssKiB = m.rssKiB
    if (m.rssKiB > this.segmentMaxKiB) this.segmentMaxKiB = m.rssKiB
    if (m.hwmKiB > this.lastHwmKiB) this.lastHwmKiB = m.hwmKiB
  }

  /** Largest VmRSS sampled since the previous call (or the start), in MiB; starts a new segment. */
  segment(): number {
    this.sample()
    const max = this.segmentMaxKiB
    this.segmentMaxKiB = 0
    return max / 1024
  }

  /** Call while the process is still alive. */
  finish(): { hwmMiB: number; maxSampledRssMiB: number; startRssMiB: number; samples: number } {
    this.sample()
    clearInterval(this.timer)
    return {
      hwmMiB: this.lastHwmKiB / 1024,
      maxSampledRssMiB: this.maxRssKiB / 1024,
      startRssMiB: (this.firstRssKiB ?? 0) / 1024,
      samples: this.samples,
    }
  }
}
