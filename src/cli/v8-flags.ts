/**
 * V8 settings the daemon runs with, applied before anything else is loaded (this module is the
 * program's first import, so its body runs before the rest of the program's).
 *
 * `--external-memory-accounted-in-global-limit`: V8 13.6 (Node 24) starts a full collection
 * whenever memory outside its heap — Buffers — has grown by 64 MB since the last one. Every piece
 * that passes through a daemon allocates Buffers (socket reads, the cipher's output, pieces read
 * from disk), so a daemon moving 1 GiB ran a full collection per ~64 MB: 39–48 per daemon per lab
 * pull, 20–30 % of its CPU. With this flag, Buffers count towards the heap's own growing limit
 * instead; they are still collected (memory stays bounded by that limit), just far less often.
 * Measured in the p2p bench (256 MiB, medians of 3): receiver 12.8 → 9.9 CPU-s per GiB, sender
 * 5.6 → 3.2; peak RSS 263 → 331 MiB (343 MiB for 1 GiB: bounded by the heap's limit, not the
 * blob's size). Newer V8 has made this the default and removed the flag (V8 513bb22991,
 * cf511a65ad). It is set only on V8 13 (Node 24), where it exists; older V8 would print
 * "unrecognized flag".
 */
import { setFlagsFromString } from 'node:v8'

const EXTERNAL_MEMORY_FLAG = '--external-memory-accounted-in-global-limit'

/**
 * `--heap-growing-percent=300`: after each full collection V8 sets the next limit at a factor of
 * what survived, chosen between 1.1 and 4 from how fast collections run against the program; on a
 * busy node it chose low, and with Buffers counted (above) a daemon moving pieces still made a full
 * collection every 2–3 s, 10–20 per lab P1 pull, each over a heap that barely shrank (~41 → 34 MB).
 * This fixes the factor at 4, the largest V8 would choose itself. Lab P1, 6 pairs alternated:
 * daemons' CPU 62.0 → 52.3 CPU-s, slowest pull 47.5 → 42.1 s (medians), peak RSS per daemon 354–485
 * → 372–493 MiB (in P4, where every daemon receives the whole image at once, ~100 MiB more: up to
 * 651). The limit stays capped by the heap's maximum, which Node sizes from the memory the process
 * may use (560 MiB in a 1 GiB cgroup).
 */
const HEAP_GROWING_FLAG = '--heap-growing-percent=300'

if (Number(process.versions.v8.split('.')[0]) === 13) setFlagsFromString(EXTERNAL_MEMORY_FLAG)
setFlagsFromString(HEAP_GROWING_FLAG)
