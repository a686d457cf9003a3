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
  /** Pieces on their way at once, whatever their delivery time (and at the start). */
  min: number
  max: number
  /** How long delivering one piece should take: one slot more after a piece faster than this, one fewer after one twice as slow. */
  targetMs: number
}

/**
 * How many pieces a node has on their way at once (from reading one until its recipient
 * announces it), sized by how long each takes: one more after a piece delivered within
 * `targetMs`, one fewer after one that took over twice that, within [min, max]; waiters are
 * served in order. On a slow uplink sixteen pieces at once took sixteen times as long each, so
 * nothing sent was whole (and could be passed on) for half a minute, and requests queued behind
 * them looked stalled; on a fast one a few slots would leave it idle.
 */
export class UploadSlots {
  private active = 0
  private current: number
  private readonly waiters: (() => void)[] = []

  constructor(private readonly o: UploadSlotsInit) {
    this.current = o.min
  }

  /** Pieces that may be on their way at once now. */
  get limit(): number {
    return this.current
  }

  get inUse(): number {
    return this.active
  }

  async acquire(): Promise<void> {
    if (this.waiters.length === 0 && this.active < this.current) {
      this.active++
      return
    }
    // The slot is counted in by `pump` before the waiter is woken.
    await new Promise<void>((resolve) => this.waiters.push(resolve))
  }

  /** `deliveredMs`: how long the piece took from acquire to its recipient's Have (undefined: skipped or never confirmed). */
  release(deliveredMs?: number): void {
    if (deliveredMs !== undefined) {
      if (deliveredMs <= this.o.targetMs) this.current = Math.min(this.o.max, this.current + 1)
      else if (deliveredMs > 2 * this.o.targetMs) this.current = Math.max(this.o.min, this.current - 1)
    }
    this.active--
    this.pump()
  }

  private pump(): void {
    while (this.waiters.length > 0 && this.active < this.current) {
      const next = this.waiters.shift()
      this.active++
      next?.()
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
