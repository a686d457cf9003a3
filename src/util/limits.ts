import { setTimeout as sleep } from 'node:timers/promises'

/** A token bucket in bytes per second; `take` waits until the bytes may go. One second of burst. */
export class RateLimiter {
  private tokens: number
  private last = Date.now()

  constructor(private readonly bytesPerSecond: number) {
    this.tokens = bytesPerSecond
  }

  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    for (;;) {
      const now = Date.now()
      this.tokens = Math.min(this.bytesPerSecond, this.tokens + ((now - this.last) / 1000) * this.bytesPerSecond)
      this.last = now
      // A chunk larger than the bucket goes once the bucket is full (it leaves it negative).
      if (this.tokens >= Math.min(bytes, this.bytesPerSecond)) {
        this.tokens -= bytes
        return
      }
      const wait = ((Math.min(bytes, this.bytesPerSecond) - this.tokens) / this.bytesPerSecond) * 1000
      await sleep(Math.max(1, Math.ceil(wait)), undefined, { signal })
    }
  }
}

/** Bounded concurrency; waiters are served in order. */
export class Semaphore {
  private active = 0
  private readonly queue: (() => void)[] = []

  constructor(private readonly max: number) {}

  async acquire(): Promise<void> {
    if (this.active < this.max) {
      this.active++
      return
    }
    await new Promise<void>((resolve) => this.queue.push(resolve))
    this.active++
  }

  release(): void {
    this.active--
    this.queue.shift()?.()
  }
}

export interface UploadSlotsInit {
  /** Pieces on their way at once whatever the rate measured (also before any is measured). */
  min: number
  max: number
  /** Pieces on their way should be about this long's worth of the rate delivered. */
  targetMs: number
  /** The rate is what was delivered over this much busy time (time with a piece on its way). */
  windowMs: number
}

/**
 * How many pieces a node has on their way at once (from reading one until its recipient
 * announces it): as many as its upload delivers in about `targetMs`, within [min, max] (Little's
 * law); waiters are served in order. On a slow uplink sixteen pieces at once took sixteen times
 * as long each, so nothing sent was whole (and could be passed on) for half a minute, and requests
 * queued behind them looked stalled.
 *
 * The rate counts pieces delivered (their recipient's Have came back), not pieces handed to a
 * stream, which buffers megabytes (a seed "sent" 41 pieces in 20 s on a link that carries 12); and
 * it is taken over busy time only, so that a node that is asked for little (in a cold herd every
 * node waits for the origin most of the time) is not taken for a slow one when a burst comes.
 */
export class UploadSlots {
  private active = 0
  private readonly waiters: { pieceBytes: number; resolve: () => void }[] = []
  /** Deliveries with the busy time (ms) at which each came. */
  private readonly delivered: { busyAt: number; bytes: number }[] = []
  private bytesInWindow = 0
  private busyMs = 0
  private lastChange = Date.now()

  constructor(private readonly o: UploadSlotsInit) {}

  private tick(now: number): void {
    if (this.active > 0 && now > this.lastChange) this.busyMs += now - this.lastChange
    this.lastChange = Math.max(this.lastChange, now)
  }

  /** Bytes per second delivered over the last `windowMs` of busy time (one second at least). */
  rate(now = Date.now()): number {
    this.tick(now)
    const from = this.busyMs - this.o.windowMs
    while (this.delivered.length > 0 && (this.delivered[0]?.busyAt ?? 0) < from) {
      this.bytesInWindow -= this.delivered.shift()?.bytes ?? 0
    }
    if (this.delivered.length === 0) return 0
    const span = Math.max(1000, Math.min(this.o.windowMs, this.busyMs))
    return (this.bytesInWindow * 1000) / span
  }

  /** Pieces of `pieceBytes` that may be on their way at once now. */
  limit(pieceBytes: number, now = Date.now()): number {
    const n = Math.ceil((this.rate(now) * this.o.targetMs) / 1000 / Math.max(1, pieceBytes)) + 1
    return Math.min(this.o.max, Math.max(this.o.min, n))
  }

  get inUse(): number {
    return this.active
  }

  /** Acquirers waiting for a slot. */
  get waiting(): number {
    return this.waiters.length
  }

  async acquire(pieceBytes: number, now = Date.now()): Promise<void> {
    if (this.waiters.length === 0 && this.active < this.limit(pieceBytes, now)) {
      this.tick(now)
      this.active++
      return
    }
    // The slot is counted in by `pump` before the waiter is woken.
    await new Promise<void>((resolve) => this.waiters.push({ pieceBytes, resolve }))
  }

  /** `deliveredBytes`: what the slot delivered (0 when the piece was skipped or not confirmed), for the rate. */
  release(deliveredBytes: number, now = Date.now()): void {
    this.tick(now)
    if (deliveredBytes > 0) {
      this.delivered.push({ busyAt: this.busyMs, bytes: deliveredBytes })
      this.bytesInWindow += deliveredBytes
    }
    this.active--
    this.pump(now)
  }

  private pump(now: number): void {
    for (;;) {
      const next = this.waiters[0]
      if (next === undefined || this.active >= this.limit(next.pieceBytes, now)) return
      this.waiters.shift()
      this.tick(now)
      this.active++
      next.resolve()
    }
  }
}

/** Passes chunks through a rate limiter. */
export async function* throttle(
  body: AsyncIterable<Uint8Array>,
  limiter: RateLimiter | undefined,
  signal?: AbortSignal,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) {
    if (limiter !== undefined) await limiter.take(chunk.byteLength, signal)
    yield chunk
  }
}
