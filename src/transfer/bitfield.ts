/** A fixed-size set of piece indexes; bit i is LSB-first in byte i >> 3 (as on the wire). */
export class Bitfield {
  readonly length: number
  readonly bytes: Uint8Array<ArrayBuffer>
  private count = 0

  constructor(length: number, bytes?: Uint8Array) {
    this.length = length
    this.bytes = new Uint8Array(Math.ceil(length / 8))
    if (bytes !== undefined) {
      this.bytes.set(bytes.subarray(0, this.bytes.length))
      // Bits past `length` in the last byte are ignored.
      for (let i = 0; i < length; i++) if (this.has(i)) this.count++
      for (let i = length; i < this.bytes.length * 8; i++) this.clearBit(i)
    }
  }

  has(i: number): boolean {
    if (i < 0 || i >= this.length) return false
    return ((this.bytes[i >> 3] ?? 0) & (1 << (i & 7))) !== 0
  }

  set(i: number): boolean {
    if (i < 0 || i >= this.length || this.has(i)) return false
    this.bytes[i >> 3] = (this.bytes[i >> 3] ?? 0) | (1 << (i & 7))
    this.count++
    return true
  }

  private clearBit(i: number): void {
    this.bytes[i >> 3] = (this.bytes[i >> 3] ?? 0) & ~(1 << (i & 7))
  }

  clear(i: number): void {
    if (!this.has(i)) return
    this.clearBit(i)
    this.count--
  }

  get size(): number {
    return this.count
  }

  get complete(): boolean {
    return this.count === this.length
  }

  /** The first index not set at or after `from`, or `length`. */
  firstMissing(from = 0): number {
    for (let i = from; i < this.length; i++) if (!this.has(i)) return i
    return this.length
  }

  static full(length: number): Bitfield {
    const b = new Bitfield(length)
    for (let i = 0; i < length; i++) b.set(i)
    return b
  }
}
