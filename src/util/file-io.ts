import type { FileHandle } from 'node:fs/promises'

/**
 * Writes all of `data` at `position` (a short write is continued). One call for the whole piece:
 * writes of at most 1 MiB cost this VM's daemons less (no 2 MiB page-cache folios to take from
 * the memory the host was given back), but the cost moved to the client's writes, which then
 * ended the pull 5–12 s later (docs/BENCHMARKS.md, fourteenth pass).
 */
export async function writeAll(handle: FileHandle, data: Uint8Array, position: number): Promise<void> {
  for (let off = 0; off < data.byteLength; ) {
    const { bytesWritten } = await handle.write(data, off, data.byteLength - off, position + off)
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
