/** CPU time of a process from /proc/PID/stat (utime + stime, every thread, not its children). */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

let ticksPerSecond: number | undefined

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim())
      ticksPerSecond = Number.isInteger(n) && n > 0 ? n : 100
    } catch {
      ticksPerSecond = 100
    }
  }
  return ticksPerSecond
}

/** utime + stime of a live process in seconds (resolution 1/CLK_TCK), or undefined when it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // The command name (field 2) may hold spaces and parentheses: fields 3… start after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ')
  const utime = Number(rest[11])
  const stime = Number(rest[12])
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return undefined
  return (utime + stime) / clockTicks()
}

/** CPU seconds used by each of `pids` from construction until `stop()`. */
export class CpuMeter {
  private readonly before: (number | undefined)[]

  constructor(private readonly pids: number[]) {
    this.before = pids.map((p) => cpuSeconds(p))
  }

  stop(): (number | undefined)[] {
    return this.pids.map((p, i) => {
      const a = this.before[i]
      const b = cpuSeconds(p)
      return a === undefined || b === undefined ? undefined : b - a
    })
  }
}
