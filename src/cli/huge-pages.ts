/**
 * The daemon's malloc on transparent huge pages: `shoal daemon` restarts itself in place (same
 * PID, `process.execve`) with `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` when that is not set yet.
 * The entry point imports this module before loading the rest of the program.
 *
 * Why: every byte a daemon moves passes through Buffers that glibc's malloc hands out (socket
 * reads, the cipher's output, pieces), ~300 MiB first touched per daemon per pull of a 256 MiB
 * image. On a VM that gives freed memory back to its host, a first touch of a 4 KiB page cost
 * 2.3 ms per MiB here, each time memory was freed and taken again; memory that glibc asks for
 * with MADV_HUGEPAGE comes in 2 MiB pages, 0.06 ms per MiB once the process has had it. Lab P1
 * (10 daemons, 6 alternated pairs): 87 % fewer minor page faults, slowest pull 35.0 → 32.9 s
 * (docs/BENCHMARKS.md, seventeenth and eighteenth passes).
 * The tunable takes effect only at a process's start, so the daemon cannot set it for itself.
 *
 * Nothing happens when: the host's transparent huge pages are `never`; GLIBC_TUNABLES already
 * names `glibc.malloc.hugetlb` (the operator's choice wins, `=0` turns it off);
 * `SHOAL_HUGE_PAGES=off`; not Linux; or Node has no `process.execve` (before 22.15). A libc
 * other than glibc ignores the variable. If the exec fails the daemon goes on as it is.
 */
import { readFileSync } from 'node:fs'

const TUNABLE = 'glibc.malloc.hugetlb'

/** The `enabled` mode of transparent huge pages ("always", "madvise", "never"), or undefined. */
export function thpMode(): string | undefined {
  try {
    return /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1]
  } catch {
    return undefined
  }
}

/**
 * The environment to restart `argv` with, or undefined when it should run as it is. `argv` is
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

const restart = hugePageEnv(process.argv, process.env)
if (restart !== undefined && typeof process.execve === 'function') {
  try {
    process.execve(process.execPath, [process.execPath, ...process.execArgv, ...process.argv.slice(1)], restart)
  } catch {
    // Not restarted: the daemon runs on 4 KiB pages, as it would without this module.
  }
}
