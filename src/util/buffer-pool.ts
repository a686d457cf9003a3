/**
 * Large buffers used again instead of allocated fresh: a received piece (4 MiB) is assembled in
 * one of them, and given back once it is stored. Node allocates such buffers outside V8's heap,
 * and V8 answers every 64 MB of that memory with a full garbage collection; at a piece exchange's
 * rates that was dozens of collections per pull on every daemon.
 *
 * A buffer that is never given back is simply collected, so callers give back only when they are
 * sure nothing reads it any more; one given back too early would be overwritten under its reader.
 *
 * With `idleMs`, what is kept goes to the collector once nothing was taken for that long (checked
 * every `idleMs`): a pull's buffers are held for the next one, not for ever.
 */
export class BufferPool {
  private readonly free = new Map<number, Uint8Array<ArrayBuffer>[]>()
  private readonly ours = new WeakSet<ArrayBuffer>()
  private readonly idle = new WeakSet<ArrayBuffer>()
  private freeBytes = 0
  private takenSinceCheck = false
  private timer: NodeJS.Timeout | undefined

  /**
   * @param classes buffer capacities, ascending (a request takes the smallest that fits; larger
   *   requests get a plain buffer)
   * @param maxFreeBytes most bytes kept while unused
   * @param idleMs with nothing taken for this long, the buffers kept are dropped (0: kept)
   */
  constructor(
    private readonly classes: number[],
    private readonly maxFreeBytes: number,
    private readonly idleMs = 0,
  ) {}

  /** A buffer of exactly `size` bytes, its contents undefined. */
  take(size: number): Uint8Array<ArrayBuffer> {
    const capacity = this.classes.find((c) => c >= size)
    if (capacity === undefined) return Buffer.allocUnsafeSlow(size)
    this.takenSinceCheck = true
    const buf = this.free.get(capacity)?.pop()
    if (buf !== undefined) {
      this.freeBytes -= capacity
      this.idle.delete(buf.buffer)
      return buf.subarray(0, size)
    }
    const fresh = Buffer.allocUnsafeSlow(capacity)
    this.ours.add(fresh.buffer)
    return fresh.subarray(0, size)
  }

  /** Gives back the buffer `view` lies in (any view of it); anything not from `take` is ignored. */
  give(view: Uint8Array): void {
    const ab = view.buffer
    if (!(ab instanceof ArrayBuffer) || !this.ours.has(ab) || this.idle.has(ab)) return
    const capacity = ab.byteLength
    if (this.freeBytes + capacity > this.maxFreeBytes) return
    let list = this.free.get(capacity)
    if (list === undefined) {
      list = []
      this.free.set(capacity, list)
    }
    list.push(new Uint8Array(ab))
    this.idle.add(ab)
    this.freeBytes += capacity
    if (this.idleMs > 0 && this.timer === undefined) {
      this.takenSinceCheck = false
      this.timer = setInterval(() => this.check(), this.idleMs)
      this.timer.unref()
    }
  }

  /** Drops what is kept when nothing was taken since the last check. */
  private check(): void {
    if (this.takenSinceCheck && this.freeBytes > 0) {
      this.takenSinceCheck = false
      return
    }
    // The buffers are no longer ours to hand out: a stray give() of one is ignored.
    for (const list of this.free.values()) for (const b of list) this.ours.delete(b.buffer)
    this.free.clear()
    this.freeBytes = 0
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** Bytes held while unused. */
  get held(): number {
    return this.freeBytes
  }
}
