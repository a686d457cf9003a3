/**
 * Large buffers used again instead of allocated fresh: a received piece (4 MiB) is assembled in
 * one of them, and given back once it is stored. Node allocates such buffers outside V8's heap,
 * and V8 answers every 64 MB of that memory with a full garbage collection; at a piece exchange's
 * rates that was dozens of collections per pull on every daemon.
 *
 * A buffer that is never given back is simply collected, so callers give back only when they are
 * sure nothing reads it any more; one given back too early would be overwritten under its reader.
 */
export class BufferPool {
  private readonly free = new Map<number, Uint8Array<ArrayBuffer>[]>()
  private readonly ours = new WeakSet<ArrayBuffer>()
  private readonly idle = new WeakSet<ArrayBuffer>()
  private freeBytes = 0

  /**
   * @param classes buffer capacities, ascending (a request takes the smallest that fits; larger
   *   requests get a plain buffer)
   * @param maxFreeBytes most bytes kept while unused
   */
  constructor(
    private readonly classes: number[],
    private readonly maxFreeBytes: number,
  ) {}

  /** A buffer of exactly `size` bytes, its contents undefined. */
  take(size: number): Uint8Array<ArrayBuffer> {
    const capacity = this.classes.find((c) => c >= size)
    if (capacity === undefined) return Buffer.allocUnsafeSlow(size)
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
  }

  /** Bytes held while unused. */
  get held(): number {
    return this.freeBytes
  }
}
