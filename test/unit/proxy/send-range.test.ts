import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createServer, request, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import { sendRange } from '../../../src/proxy/send-file.js'
import type { RangeReader } from '../../../src/util/file-io.js'

/** A reader of `data` that hands out at most `step` bytes per read and fails at `failAt`. */
function readerOf(data: Buffer, step: number, failAt = Number.POSITIVE_INFINITY): RangeReader & { seen: Uint8Array[] } {
  const seen: Uint8Array[] = []
  return {
    seen,
    read: async (buf, pos) => {
      if (pos >= failAt) throw Object.assign(new Error('disk full'), { code: 'ENOSPC' })
      seen.push(buf)
      const n = Math.min(buf.length, step, data.length - pos)
      data.copy(buf, 0, pos, pos + n)
      return n
    },
    close: async () => {},
  }
}

/** One request to a server whose handler is `handle`; the body the client got and the handler's outcome. */
async function serve(
  handle: (res: ServerResponse) => Promise<unknown>,
): Promise<{ status: number; body: Buffer; outcome: unknown }> {
  let outcome: Promise<unknown> = Promise.resolve()
  const server = createServer((_req, res) => {
    outcome = handle(res).then(
      (v) => v,
      (err: unknown) => {
        if (!res.headersSent) res.statusCode = 500
        res.end()
        return err
      },
    )
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  try {
    const { port } = server.address() as AddressInfo
    let status = 0
    const body = await new Promise<Buffer>((resolve, reject) => {
      request({ host: '127.0.0.1', port, path: '/' }, (res) => {
        status = res.statusCode ?? 0
        const parts: Buffer[] = []
        res.on('data', (c: Buffer) => parts.push(c))
        res.on('end', () => resolve(Buffer.concat(parts)))
        res.on('error', reject)
      })
        .on('error', reject)
        .end()
    })
    return { status, body, outcome: await outcome }
  } finally {
    server.close()
  }
}

describe('sendRange', () => {
  it('sends the range in reads of any size and reuses its buffers in the next response', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17)
    const first = readerOf(data, 300_000)
    const a = await serve((res) => sendRange(res, first, 5, data.length, new AbortController().signal))
    assert.equal(a.outcome, data.length - 5)
    assert.deepEqual(a.body, data.subarray(5))
    const second = readerOf(data, 1024 * 1024)
    const b = await serve((res) => sendRange(res, second, 0, data.length, new AbortController().signal))
    assert.deepEqual(b.body, data)
    // The second response read into the buffers the first one gave back.
    const buffersOf = (r: { seen: Uint8Array[] }): Set<ArrayBufferLike> => new Set(r.seen.map((u) => u.buffer))
    assert.equal(buffersOf(first).size, 2)
    assert.deepEqual(buffersOf(second), buffersOf(first))
  })

  it('a reader failing at once leaves the response unsent; later, progress tells what went out', async () => {
    const data = randomBytes(4 * 1024 * 1024)
    const early = await serve(async (res) => {
      await sendRange(res, readerOf(data, 1024 * 1024, 0), 0, data.length, new AbortController().signal)
    })
    assert.equal((early.outcome as NodeJS.ErrnoException).code, 'ENOSPC')
    assert.equal(early.status, 500)
    assert.equal(early.body.length, 0)

    const progress = { sent: 0 }
    const late = await serve(async (res) => {
      try {
        await sendRange(
          res,
          readerOf(data, 1024 * 1024, 2 * 1024 * 1024),
          0,
          data.length,
          new AbortController().signal,
          progress,
        )
      } catch (err) {
        // What a caller does on ENOSPC: the rest from elsewhere, from where the sending stopped.
        res.end(data.subarray(progress.sent))
        throw err
      }
    })
    assert.equal((late.outcome as NodeJS.ErrnoException).code, 'ENOSPC')
    assert.equal(progress.sent, 2 * 1024 * 1024)
    assert.equal(late.status, 200)
    assert.deepEqual(late.body, data)
  })
})
