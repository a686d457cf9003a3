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
  /** Pieces sent at once whatever the rate measured (also before any is measured). */
  min: number
  max: number
  /** How long sending one piece should take at the rate measured. */
  targetMs: number
  /** The rate is what was sent in this window. */
  windowMs: number
}

/**
 * How many pieces a node sends at once: as many as its measured upload rate sends in about
 * `targetMs` each, within [min, max]; waiters are served in order. A node on a slow uplink that
 * sent sixteen pieces at once took sixteen times as long for each, so nothing it sent was whole
 * (and could be passed on) for half a minute, and requests queued behind them looked stalled.
 */
export class UploadSlots {
  private active = 0
  private readonly waiters: { pieceBytes: number; resolve: () => void }[] = []
  private readonly sent: { at: number; bytes: number }[] = []
  private sentInWindow = 0

  constructor(private readonly o: UploadSlotsInit) {}

  /** Bytes per second sent over the last window. */
  rate(now = Date.now()): number {
    while (this.sent.length > 0 && now - (this.sent[0]?.at ?? now) > this.o.windowMs) {
      this.sentInWindow -= this.sent.shift()?.bytes ?? 0
    }
    return (this.sentInWindow * 1000) / this.o.windowMs
  }

  /** Pieces of `pieceBytes` that may be sent at once now. */
  limit(pieceBytes: number, now = Date.now()): number {
    const n = Math.ceil((this.rate(now) * this.o.targetMs) / 1000 / Math.max(1, pieceBytes)) + 1
    return Math.min(this.o.max, Math.max(this.o.min, n))
  }

  get inUse(): number {
    return this.active
  }

  async acquire(pieceBytes: number): Promise<void> {
    if (this.waiters.length === 0 && this.active < this.limit(pieceBytes)) {
      this.active++
      return
    }
    // The slot is counted in by `pump` before the waiter is woken.
    await new Promise<void>((resolve) => this.waiters.push({ pieceBytes, resolve }))
  }

  /** `bytesSent`: what the slot sent (0 when the piece was skipped), for the rate. */
  release(bytesSent: number, now = Date.now()): void {
    if (bytesSent > 0) {
      this.sent.push({ at: now, bytes: bytesSent })
      this.sentInWindow += bytesSent
    }
    this.active--
    this.pump(now)
  }

  private pump(now: number): void {
    for (;;) {
      const next = this.waiters[0]
      if (next === undefined || this.active >= this.limit(next.pieceBytes, now)) return
      this.waiters.shift()
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
