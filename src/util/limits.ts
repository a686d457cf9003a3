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
