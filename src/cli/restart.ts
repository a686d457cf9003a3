/**
 * Settings the daemon needs from its process's start: `shoal daemon` restarts itself in place
 * (same PID, `process.execve`) with them when they are not set yet. The entry point imports this
 * module before loading the rest of the program. If the exec fails, or Node has no
 * `process.execve` (before 22.15), the daemon goes on as it is.
 *
 * **malloc on huge pages**: `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`. Every byte a daemon moves
 * passes through Buffers that glibc's malloc hands out (socket reads, the cipher's output, pieces),
 * ~300 MiB first touched per daemon per pull of a 256 MiB image. On a VM that gives freed memory
 * back to its host, a first touch of a 4 KiB page cost 2.3 ms per MiB here, each time memory was
 * freed and taken again; memory that glibc asks for with MADV_HUGEPAGE comes in 2 MiB pages, 0.06
 * ms per MiB once the process has had it. Lab P1 (10 daemons, 6 alternated pairs): 87 % fewer minor
 * page faults, slowest pull 35.0 → 32.9 s (docs/BENCHMARKS.md, seventeenth and eighteenth passes).
 * Not set when: the host's transparent huge pages are `never`; GLIBC_TUNABLES already names
 * `glibc.malloc.hugetlb` (the operator's choice wins, `=0` turns it off); `SHOAL_HUGE_PAGES=off`;
 * not Linux. A libc other than glibc ignores the variable.
 *
 * **A small young generation**: `--max-semi-space-size=8` (MiB), a new space of 16 MiB. Node's
 * default lets V8's new space grow to 64 MiB, which a daemon fills and touches whole, though the
 * buffer collector (src/util/buffer-collector.ts) collects it every 16 MiB of Buffers anyway. Lab
 * P1 (docs/BENCHMARKS.md, thirty-fourth pass; medians of 3 pairs): the flag given to the daemons,
 * peak RSS per daemon 311–348 → 272–304 MiB, the daemons' CPU 64.5 → 60.5 CPU-s, the slowest pull
 * 47.9 → 45.0 s; this restart against the engine before it (6 pairs), slowest pull 44.55 → 43.05
 * s (sooner in each pair). 4 MiB did about as well with more user CPU, 2 MiB worse (objects
 * promoted early grew the old generation).
 * V8 reads the flag only when the heap is set up, so it cannot be set from inside the program.
 * Not set when Node's own flags (its command line or `NODE_OPTIONS`) name it: the operator's
 * value wins.
 */
import { readFileSync } from 'node:fs'

const TUNABLE = 'glibc.malloc.hugetlb'

/** The young generation's largest semi-space for the daemon, MiB (see above). */
export const DAEMON_SEMI_SPACE_MIB = 8
const SEMI_SPACE_FLAG = '--max-semi-space-size'

/** The `enabled` mode of transparent huge pages ("always", "madvise", "never"), or undefined. */
export function thpMode(): string | undefined {
  try {
    return /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1]
  } catch {
    return undefined
  }
}

/**
 * The environment with the huge-page tunable, or undefined when it should stay as it is. `argv` is
 * process.argv (node, script, command, ...): only the daemon is restarted.
 */
export function hugePageEnv(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  platform: string = process.platform,
  mode: () => string | undefined = thpMode,
): NodeJS.ProcessEnv | undefined {
  if (platform !== 'linux' || argv[2] !== 'daemon') return undefined
  if (env.SHOAL_HUGE_PAGES?.toLowerCase() === 'off') return undefined
  const tunables = env.GLIBC_TUNABLES ?? ''
  if (tunables.split(':').some((t) => t.split('=')[0] === TUNABLE)) return undefined
  if (mode() === 'never') return undefined
  return { ...env, GLIBC_TUNABLES: tunables === '' ? `${TUNABLE}=1` : `${tunables}:${TUNABLE}=1` }
}

/** Node flags to add for the daemon: the semi-space's, unless Node's flags already name it. */
export function semiSpaceArgs(argv: readonly string[], execArgv: readonly string[], env: NodeJS.ProcessEnv): string[] {
  if (argv[2] !== 'daemon') return []
  // V8 takes `_` for `-` in flag names.
  const named = (a: string): boolean => a.replaceAll('_', '-').split('=')[0] === SEMI_SPACE_FLAG
  const options = (env.NODE_OPTIONS ?? '').split(/\s+/)
  if (execArgv.some(named) || options.some(named)) return []
  return [`${SEMI_SPACE_FLAG}=${DAEMON_SEMI_SPACE_MIB}`]
}

/** What to restart the process with (Node's flags and environment), or undefined to go on as it is. */
export function daemonRestart(
  argv: readonly string[],
  execArgv: readonly string[],
  env: NodeJS.ProcessEnv,
  platform: string = process.platform,
  mode: () => string | undefined = thpMode,
): { execArgv: string[]; env: NodeJS.ProcessEnv } | undefined {
  const restartEnv = hugePageEnv(argv, env, platform, mode)
  const flags = semiSpaceArgs(argv, execArgv, env)
  if (restartEnv === undefined && flags.length === 0) return undefined
  return { execArgv: [...execArgv, ...flags], env: restartEnv ?? env }
}

const restart = daemonRestart(process.argv, process.execArgv, process.env)
if (restart !== undefined && typeof process.execve === 'function') {
  try {
    process.execve(process.execPath, [process.execPath, ...restart.execArgv, ...process.argv.slice(1)], restart.env)
  } catch {
    // Not restarted: the daemon runs with Node's and glibc's defaults.
  }
}
