import { getHeapStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { BUFFER_GC_INTERVAL_MS, BUFFER_GC_STEP_BYTES } from '../constants.js'

/** V8's `gc` function (`--expose-gc`), as far as this module calls it. */
export type GcFunction = (options: { type: 'minor' }) => void

/**
 * V8's `gc`, or undefined where it cannot be had. `--expose-gc` set at run time adds `gc` to the
 * global object of contexts created afterwards (not to the program's own), so one is taken from a
 * new context; a process started with `--expose-gc` has it on its own global already.
 */
export function exposeGc(): GcFunction | undefined {
  const own = (globalThis as { gc?: unknown }).gc
  if (typeof own === 'function') return own as GcFunction
  try {
    setFlagsFromString('--expose-gc')
    const gc: unknown = runInNewContext('gc')
    return typeof gc === 'function' ? (gc as GcFunction) : undefined
  } catch {
    return undefined
  }
}

/**
 * Collects the young generation whenever Buffers have grown by `stepBytes` since they were last
 * lowest, so that the memory of Buffers dropped a moment ago is used again instead of new memory.
 *
 * Why: every byte a daemon moves passes through short-lived Buffers (socket reads, the cipher's
 * output), ~25 MiB a second on a busy daemon. V8 frees a dead Buffer's memory only when a
 * collection finds it dead, and starts a young-generation collection only when its own heap's new
 * space is full; a Buffer's object there is ~100 bytes for 64 KiB outside, so new space filled
 * every few seconds while 100+ MiB of dead Buffers waited. malloc then took new memory meanwhile:
 * peak RSS ~390 MiB per daemon in lab P1, and on a VM that gives freed memory back to its host
 * every new page costs a host fault (a quarter of the machine's time in a P1, as `clear_page`
 * under malloc). A young collection over a heap of live pieces costs ~1 ms; the full collections
 * that `src/cli/v8-flags.ts` made rare stay rare.
 *
 * Checked every `intervalMs` with V8's `external_memory` (its count of Buffers' memory; ~1.5 µs,
 * no system call). `process.memoryUsage()` also reads /proc for the RSS: on a busy lab daemon its
 * 4 calls a second held the main thread ~3 ms each (a system call is where a loaded machine
 * switches to another process). V8 lowers `external_memory` for swept Buffers at its next
 * collection, not at once, so the floor shows a step late; in a test loop dropping 25 MiB of Buffers
 * a second that made 7 collections instead of 8 and a peak of 32 MiB instead of 27. Nothing is
 * collected while Buffers do not grow, so an idle daemon costs nothing.
 */
export class BufferCollector {
  /** Collections this collector asked for. */
  runs = 0
  private floor = Number.POSITIVE_INFINITY
  private timer: NodeJS.Timeout | undefined

  constructor(
    /** V8's `gc` (`exposeGc()`), or undefined for a collector that does nothing. */
    private readonly gc: GcFunction | undefined,
    private readonly stepBytes = BUFFER_GC_STEP_BYTES,
    private readonly intervalMs = BUFFER_GC_INTERVAL_MS,
    private readonly bufferBytes: () => number = () => getHeapStatistics().external_memory,
  ) {}

  /** False when V8's `gc` could not be had (the daemon then runs as V8 alone decides). */
  get available(): boolean {
    return this.gc !== undefined
  }

  start(): void {
    if (this.gc === undefined || this.timer !== undefined) return
    this.timer = setInterval(() => this.check(), this.intervalMs)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** One check: collects when Buffers grew by a step over their lowest since the last collection. */
  check(): boolean {
    if (this.gc === undefined) return false
    const bytes = this.bufferBytes()
    if (bytes < this.floor) {
      this.floor = bytes
      return false
    }
    if (bytes - this.floor < this.stepBytes) return false
    this.gc({ type: 'minor' })
    this.runs++
    // The dead Buffers' memory is freed by a sweeper thread after the collection, and counted as
    // freed later: the next checks see the new low and take it as the floor.
    this.floor = this.bufferBytes()
    return true
  }
}
