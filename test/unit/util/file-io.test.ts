import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, open, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { MAX_WRITE_BYTES, readFully, writeAll } from '../../../src/util/file-io.js'

describe('file-io', () => {
  it('writeAll puts a piece at its place in calls of at most MAX_WRITE_BYTES', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-fileio-'))
    try {
      const fh = await open(join(dir, 'f'), 'w+')
      const lengths: number[] = []
      const write = fh.write.bind(fh) as (...a: unknown[]) => Promise<{ bytesWritten: number }>
      ;(fh as unknown as { write: unknown }).write = (...a: unknown[]) => {
        lengths.push(a[2] as number)
        return write(...a)
      }
      const piece = randomBytes(4 * 1024 * 1024 + 123)
      const at = 4 * 1024 * 1024
      await writeAll(fh, piece, at)
      assert.equal(lengths.length, 5)
      assert.ok(lengths.every((n) => n <= MAX_WRITE_BYTES))
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
