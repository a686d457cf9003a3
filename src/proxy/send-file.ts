import type { FileHandle } from 'node:fs/promises'
import { open } from 'node:fs/promises'
import type { ServerResponse } from 'node:http'
import { abortError } from '../errors.js'

/** Size of each of the two buffers a response reuses. */
const CHUNK = 1024 * 1024

/**
 * Sends bytes [start, end) of a file with two reused buffers: the next chunk is read while the
 * previous one is being written, and a buffer is reused only after the socket took it. Memory per
 * response is 2 MiB whatever the blob size, and nothing is left for the garbage collector.
 * Returns the bytes written.
 */
export async function sendFile(
  res: ServerResponse,
  path: string,
  start: number,
  end: number,
  signal: AbortSignal,
): Promise<number> {
  let fh: FileHandle | undefined
  const buffers = [Buffer.allocUnsafe(Math.min(CHUNK, end - start)), Buffer.allocUnsafe(Math.min(CHUNK, end - start))]
  let pending: Promise<void> | undefined
  let pos = start
  let sent = 0
  try {
    fh = await open(path, 'r')
    for (let k = 0; pos < end; k ^= 1) {
      if (signal.aborted) throw abortError(signal)
      const buf = buffers[k] as Buffer
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, end - pos), pos)
      if (bytesRead === 0) throw new Error(`${path} ended at ${pos}`)
      if (pending !== undefined) await pending
      pos += bytesRead
      const chunk = buf.subarray(0, bytesRead)
      pending = write(res, chunk, signal).then(() => {
        sent += bytesRead
      })
    }
    if (pending !== undefined) await pending
  } finally {
    await fh?.close()
  }
  await new Promise<void>((resolve) => res.end(resolve))
  return sent
}

function write(res: ServerResponse, chunk: Buffer, signal: AbortSignal): Promise<void> {
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
