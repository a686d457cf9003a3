/**
 * The processes the lab starts: each one is recorded here when it is spawned, and stopped by its
 * PID only (SIGTERM, then SIGKILL after a bound). Nothing is ever signalled by name or group.
 *
 * `ip netns exec NS CMD …` execs CMD in place (no fork), so the PID we spawn is the PID of CMD
 * itself: stopping it stops the daemon, the registry or the client, not a wrapper.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { MachineShares } from './types.js'

export interface ExitInfo {
  code: number | null
  signal: string | null
  /** performance.now() when it ended. */
  at: number
}

export interface LabProc {
  readonly name: string
  readonly pid: number
  readonly child: ChildProcess
  readonly logFile: string | undefined
  /** performance.now() when it was spawned. */
  readonly startedAt: number
  readonly exited: Promise<ExitInfo>
  exit: ExitInfo | undefined
}

export interface SpawnOptions {
  logFile?: string
  env?: NodeJS.ProcessEnv
  /** stdin/stdout as pipes (for the probe); stderr goes to the log file. */
  pipe?: boolean
}

/** CLK_TCK of Linux /proc/PID/stat times. */
const CLOCK_TICKS = 100

export class ProcTable {
  private readonly live = new Set<LabProc>()
  /** Every PID this table ever spawned (for the "all gone afterwards" check). */
  readonly started: { name: string; pid: number }[] = []

  spawn(name: string, command: string, args: string[], opts: SpawnOptions = {}): LabProc {
    const fd = opts.logFile === undefined ? 'ignore' : openSync(opts.logFile, 'a')
    let child: ChildProcess
    try {
      child = spawn(command, args, {
        env: opts.env ?? process.env,
        stdio: [opts.pipe === true ? 'pipe' : 'ignore', opts.pipe === true ? 'pipe' : fd, fd],
      })
    } finally {
      if (typeof fd === 'number') closeSync(fd)
    }
    const pid = child.pid
    if (pid === undefined) throw new Error(`${name}: spawn of ${command} failed`)
    const p: LabProc = {
      name,
      pid,
      child,
      logFile: opts.logFile,
      startedAt: performance.now(),
      exit: undefined,
      exited: new Promise<ExitInfo>((resolve) => {
        child.once('exit', (code, signal) => {
          const info = { code, signal, at: performance.now() }
          p.exit = info
          this.live.delete(p)
          resolve(info)
        })
        child.once('error', (err) => {
          const info = { code: -1, signal: `spawn error: ${err.message}`, at: performance.now() }
          p.exit = info
          this.live.delete(p)
          resolve(info)
        })
      }),
    }
    this.live.add(p)
    this.started.push({ name, pid })
    return p
  }

  /** SIGTERM, up to `graceMs`, then SIGKILL and up to 5 s more. */
  async stop(p: LabProc, graceMs = 5000): Promise<string> {
    if (p.exit !== undefined) return describeExit(p.exit)
    signal(p.pid, 'SIGTERM')
    const first = await Promise.race([p.exited, sleep(graceMs).then(() => undefined)])
    if (first !== undefined) return describeExit(first)
    return this.kill(p)
  }

  /** SIGKILL now, wait up to 5 s for the exit. */
  async kill(p: LabProc): Promise<string> {
    if (p.exit !== undefined) return describeExit(p.exit)
    signal(p.pid, 'SIGKILL')
    const r = await Promise.race([p.exited, sleep(5000).then(() => undefined)])
    return r === undefined ? 'did not exit after SIGKILL' : `${describeExit(r)} (SIGKILL)`
  }

  async stopAll(graceMs = 5000): Promise<void> {
    await Promise.all([...this.live].map((p) => this.stop(p, graceMs)))
  }

  /** Last resort when the lab process itself exits: SIGKILL what is still running. */
  killAllSync(): void {
    for (const p of this.live) signal(p.pid, 'SIGKILL')
  }

  get running(): LabProc[] {
    return [...this.live]
  }
}

export function describeExit(e: ExitInfo): string {
  return e.signal === null ? `code ${e.code}` : `signal ${e.signal}`
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch {
    // already gone
  }
}

/** Is a process with this PID alive (and not a zombie)? */
export function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
    return state !== 'Z' && state !== 'X'
  } catch {
    return false
  }
}

export interface ProcTimes {
  /** User + system CPU seconds (all threads). */
  cpuSeconds: number
  /** Of which in the kernel. */
  sysSeconds: number
  /** Minor page faults: pages the process touched for the first time (or again after release). */
  minorFaults: number
}

/** CPU times and page faults of a live process, or undefined when it is gone. */
export function procTimes(pid: number): ProcTimes | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // fields[0] is field 3 (state); minflt is field 10, utime field 14, stime field 15.
    const user = Number(fields[11]) / CLOCK_TICKS
    const sys = Number(fields[12]) / CLOCK_TICKS
    return { cpuSeconds: user + sys, sysSeconds: sys, minorFaults: Number(fields[7]) }
  } catch {
    return undefined
  }
}

/** The machine's CPU time so far (/proc/stat's first line), in clock ticks per kind. */
export interface MachineTimes {
  user: number
  system: number
  idle: number
  softirq: number
  steal: number
  total: number
}

export function machineTimes(): MachineTimes | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? ''
    const v = line.trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal (guest time is inside user already)
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = v
    return {
      user: user + nice,
      system: system + irq,
      idle: idle + iowait,
      softirq,
      steal,
      total: user + nice + system + idle + iowait + irq + softirq + steal,
    }
  } catch {
    return undefined
  }
}

/** Shares (percent) of the machine's CPU time between two readings. */
export function machineShares(a: MachineTimes | undefined, b: MachineTimes | undefined): MachineShares | undefined {
  if (a === undefined || b === undefined || b.total <= a.total) return undefined
  const t = b.total - a.total
  const pct = (k: keyof MachineTimes): number => Math.round((1000 * (b[k] - a[k])) / t) / 10
  return {
    busyPct: Math.round(1000 * (1 - (b.idle - a.idle) / t)) / 10,
    userPct: pct('user'),
    systemPct: pct('system'),
    softirqPct: pct('softirq'),
    stealPct: pct('steal'),
  }
}

export function tail(file: string | undefined, lines = 15): string {
  if (file === undefined) return '(no log)'
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

/** Runs a command to completion with a time bound; rejects with its stderr on failure. */
export function run(command: string, args: string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err !== null) {
          reject(new Error(`${command} ${args.join(' ')}: ${err.message.split('\n')[0]} ${String(stderr).trim()}`))
          return
        }
        resolve(String(stdout))
      },
    )
  })
}

/**
 * What writing a new file costs this machine in CPU (mostly the kernel's), ms per MiB: once on
 * whatever memory the page cache gets first, and once more at once after deleting the file, when
 * the kernel hands the same pages back. On a VM that returns freed memory to its host the first
 * is several times the second (this project's machines: ~3 against ~0.25 ms per MiB); there every
 * new page the lab's daemons and clients touch is that dear. Writes `mib` MiB into `dir`.
 */
export function writeCost(dir: string, mib = 128): { firstMsPerMiB: number; againMsPerMiB: number } {
  const file = join(dir, 'write-cost.tmp')
  const chunk = Buffer.alloc(4 * 1024 * 1024, 0xa5)
  const once = (): number => {
    const before = process.cpuUsage()
    const fd = openSync(file, 'w')
    try {
      for (let i = 0; i < mib / 4; i++) writeSync(fd, chunk)
    } finally {
      closeSync(fd)
    }
    const used = process.cpuUsage(before)
    rmSync(file, { force: true })
    return Math.round(((used.user + used.system) / 1000 / mib) * 1000) / 1000
  }
  const first = once()
  const again = once()
  return { firstMsPerMiB: first, againMsPerMiB: again }
}
