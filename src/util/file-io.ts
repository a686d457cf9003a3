import type { FileHandle } from 'node:fs/promises'

/**
 * The most one `write` call hands the kernel. A write of 2 MiB or more lets the page cache take
 * 2 MiB folios for it, and on a VM that gives free memory back to its host (free page reporting,
 * Firecracker here) each of those is memory the host must supply again: writing 4 MiB pieces to a
 * new file cost 9.4–10.3 ms of CPU per MiB on this machine, 1 MiB writes of the same pieces
 * 0.44–0.63 ms (docs/BENCHMARKS.md, fourteenth pass). Elsewhere four calls instead of one per
 * piece cost nothing measurable.
 */
export const MAX_WRITE_BYTES = 1024 * 1024

/** Writes all of `data` at `position`, in calls of at most `MAX_WRITE_BYTES`. */
export async function writeAll(handle: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let off = 0
  while (off < data.byteLength) {
    const len = Math.min(data.byteLength - off, MAX_WRITE_BYTES)
    const { bytesWritten } = await handle.write(data, off, len, position + off)
    off += bytesWritten
  }
}

/** Fills all of `buf` from `position`; a file that ends first is an error. */
export async function readFully(handle: FileHandle, buf: Uint8Array, position: number): Promise<void> {
  let off = 0
  while (off < buf.length) {
    const { bytesRead } = await handle.read(buf, off, buf.length - off, position + off)
    if (bytesRead === 0) throw new Error(`file ended at ${position + off}`)
    off += bytesRead
  }
}

/** Reads a range in steps into buffers its caller gives, so that they can be used again. */
export interface RangeReader {
  /** Reads from `pos` into `buf`, at most `buf.length` bytes; returns how many (at least one). */
  read(buf: Uint8Array, pos: number): Promise<number>
  close(): Promise<void>
}
