/**
 * The node's origin piece fetches while it downloads with peers (one gate per daemon, shared by
 * every transfer).
 *
 * Why: a cold herd that lets every downloader fetch its pieces from the origin four at a time per
 * blob puts every piece of the image in flight at once. They share the origin link, so none is
 * whole until the link has carried nearly the whole image: the peers have nothing to exchange
 * and the clients get no byte until T*, and then all of the exchange happens after it (measured
 * in the lab: clients at 0 % until the origin had sent 100 %). With about `swarmStreams` origin
 * fetches across the swarm, pieces come whole one after the other at the origin's rate, and the
 * exchange runs beside the origin download instead of after it.
 *
 * No coordinator: each node takes `ceil(swarmStreams / fetchers)` slots, where fetchers is how
 * many nodes (itself included) still have pieces of the blob to fetch from the origin (every
 * downloader while a piece nobody has is unclaimed; see Transfer.originFetchers). Slots go to the
 * transfer whose next origin piece lies least far into its blob, so that the clients' prefixes of
 * all layers grow together.
 */

/** Origin fetches in flight across the swarm for one cold blob (about; each node takes its share). */
export const SWARM_ORIGIN_STREAMS = 4

interface Waiter {
  /** How far into its blob the transfer's next origin piece lies, 0…1: lower goes first. */
  priority: number
  wake: () => void
}

export class OriginGate {
  private used = 0
  private readonly waiters = new Map<object, Waiter>()
  /** When an origin fetch of this node last received bytes (any blob). */
  lastProgress = 0

  constructor(private readonly swarmStreams = SWARM_ORIGIN_STREAMS) {}

  /** This node's share of the origin fetches when `fetchers` nodes fetch the blob's pieces. */
  limitFor(fetchers: number): number {
    return Math.max(1, Math.ceil(this.swarmStreams / Math.max(1, fetchers)))
  }

  /** Fetches holding a slot now. */
  get inUse(): number {
    return this.used
  }

  /**
   * A slot for `who` if fewer than `limit` are in use and no waiter has a lower priority;
   * otherwise `who` waits, and `wake` is called whenever a slot may have come free.
   */
  tryTake(who: object, priority: number, limit: number, wake: () => void): boolean {
    if (this.used < limit) {
      let first = true
      for (const [w, e] of this.waiters) {
        if (w !== who && e.priority < priority) {
          first = false
          break
        }
      }
      if (first) {
        this.waiters.delete(who)
        this.used++
        return true
      }
    }
    this.waiters.set(who, { priority, wake })
    return false
  }

  /** No fetch holds a slot and nobody but `who` waits for one. */
  idle(who: object): boolean {
    if (this.used > 0) return false
    for (const w of this.waiters.keys()) if (w !== who) return false
    return true
  }

  /** `who` wants no slot now (it has nothing for the origin, or it ended). */
  forget(who: object): void {
    if (this.waiters.delete(who)) this.wakeAll()
  }

  release(): void {
    this.used = Math.max(0, this.used - 1)
    this.wakeAll()
  }

  progress(now: number): void {
    this.lastProgress = now
  }

  private wakeAll(): void {
    for (const w of [...this.waiters.values()]) w.wake()
  }
}
