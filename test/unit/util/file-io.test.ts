import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, open, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { readFully, writeAll } from '../../../src/util/file-io.js'

describe('file-io', () => {
  it('writeAll puts a piece at its place, continuing short writes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-fileio-'))
    try {
      const fh = await open(join(dir, 'f'), 'w+')
      // A handle whose writes take at most 1000 bytes at a time.
      const write = fh.write.bind(fh) as (...a: unknown[]) => Promise<{ bytesWritten: number }>
      let calls = 0
      ;(fh as unknown as { write: unknown }).write = (buf: Uint8Array, off: number, len: number, pos: number) => {
        calls++
        return write(buf, off, Math.min(len, 1000), pos)
      }
      const piece = randomBytes(4321)
      const at = 1 << 20
      await writeAll(fh, piece, at)
      assert.equal(calls, 5)
      const back = Buffer.alloc(piece.byteLength)
      await readFully(fh, back, at)
      assert.deepEqual(back, piece)
      await fh.close()
      const whole = await readFile(join(dir, 'f'))
      assert.equal(whole.byteLength, at + piece.byteLength)
      assert.deepEqual(whole.subarray(at), piece)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('readFully fails on a file that ends first', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-fileio-'))
    try {
      const fh = await open(join(dir, 'f'), 'w+')
      await writeAll(fh, Buffer.alloc(100, 1), 0)
      await assert.rejects(readFully(fh, Buffer.alloc(60), 50), /file ended at 100/)
      await fh.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
