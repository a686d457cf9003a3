import type { FileHandle } from 'node:fs/promises'
import { open } from 'node:fs/promises'
import type { ServerResponse } from 'node:http'
import { BUFFER_POOL_IDLE_MS } from '../constants.js'
import { abortError } from '../errors.js'
import { BufferPool } from '../util/buffer-pool.js'
import type { RangeReader } from '../util/file-io.js'

/** Size of each of the two buffers a response reuses. */
const CHUNK = 1024 * 1024

/**
 * The responses' buffers, used again by the next response: a daemon that allocated fresh ones
 * for every chunk touched new memory for every byte it sent to its clients (and on this VM new
 * memory is dear, docs/BENCHMARKS.md fourteenth pass). At most 16 MiB kept while unused, until
 * none was taken for a while.
 */
const chunks = new BufferPool([CHUNK], 16 * CHUNK, BUFFER_POOL_IDLE_MS)

/**
 * Sends bytes [start, end) of a file; see `sendRange`. Returns the bytes written.
 */
export async function sendFile(
  res: ServerResponse,
  path: string,
  start: number,
  end: number,
  signal: AbortSignal,
): Promise<number> {
  let fh: FileHandle | undefined
  try {
    fh = await open(path, 'r')
    const file = fh
    const reader: RangeReader = {
      read: async (buf, pos) => {
        const { bytesRead } = await file.read(buf, 0, buf.length, pos)
        if (bytesRead === 0) throw new Error(`${path} ended at ${pos}`)
        return bytesRead
      },
      close: async () => {},
    }
    return await sendRange(res, reader, start, end, signal)
  } finally {
    await fh?.close()
  }
}

/**
 * Sends bytes [start, end) from `reader` with two reused buffers: the next chunk is read while the
 * previous one is being written, and a buffer is reused only after the socket took it. Memory per
 * response is 2 MiB whatever the blob size, and nothing is left for the garbage collector. The
 * first read happens before anything is written, so a reader that fails at once still leaves the
 * response free for an error status. Ends the response; returns the bytes written.
 *
 * `progress.sent` counts the bytes the socket took, also when it throws (the reader's error comes
 * after the chunk before it has been written).
 */
export async function sendRange(
  res: ServerResponse,
  reader: RangeReader,
  start: number,
  end: number,
  signal: AbortSignal,
  progress: { sent: number } = { sent: 0 },
): Promise<number> {
  const size = Math.min(CHUNK, end - start)
  const buffers = size > 0 ? [chunks.take(size), chunks.take(size)] : []
  // The write not yet awaited, and whether a write failed: buffers go back to the pool only when
  // no write of them can still be in progress.
  let pending: Promise<void> | undefined
  let writeFailed = false
  const settle = async (): Promise<void> => {
    const p = pending
    pending = undefined
    try {
      await p
    } catch (err) {
      writeFailed = true
      throw err
    }
  }
  let pos = start
  try {
    for (let k = 0; pos < end; k ^= 1) {
      if (signal.aborted) throw abortError(signal)
      const buf = buffers[k] as Uint8Array
      let bytesRead: number
      try {
        bytesRead = await reader.read(buf.subarray(0, Math.min(buf.length, end - pos)), pos)
      } catch (err) {
        await settle().catch(() => {})
        throw err
      }
      await settle()
      pos += bytesRead
      pending = write(res, buf.subarray(0, bytesRead), signal).then(() => {
        progress.sent += bytesRead
      })
      // Handled when it is awaited; until then (the next read may wait for the transfer) a client
      // that goes away must not make it an unhandled rejection.
      pending.catch(() => {})
    }
    await settle()
  } finally {
    if (pending === undefined && !writeFailed) for (const b of buffers) chunks.give(b)
  }
  await new Promise<void>((resolve) => res.end(resolve))
  return progress.sent
}

function write(res: ServerResponse, chunk: Uint8Array, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (res.destroyed) {
      reject(abortError(signal))
      return
    }
    const onClose = (): void => reject(abortError(signal))
    res.once('close', onClose)
    res.write(chunk, (err) => {
      res.off('close', onClose)
      if (err) reject(err)
      else resolve()
    })
  })
}
