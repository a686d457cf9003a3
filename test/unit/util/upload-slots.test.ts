import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { UploadSlots } from '../../../src/util/limits.js'

const MiB = 1024 * 1024
const PIECE = 4 * MiB

function slots(): UploadSlots {
  return new UploadSlots({ min: 4, max: 16, targetMs: 4_000, windowMs: 5_000 })
}

describe('UploadSlots', () => {
  test('the minimum before any rate is measured', () => {
    assert.equal(slots().limit(PIECE), 4)
  })

  test('a slow uplink keeps the minimum; a fast one gets the maximum; the window forgets', () => {
    const s = slots()
    const t0 = Date.now()
    // 2.5 MB/s (20 Mbit/s): a 4 MiB piece takes 1.7 s, four at once take 6.7 s each.
    for (let i = 0; i < 5; i++) {
      void s.acquire(PIECE)
      s.release(2.5e6, t0 + i * 1000)
    }
    assert.equal(s.rate(t0 + 4000), 2.5e6)
    assert.equal(s.limit(PIECE, t0 + 4000), 4)
    // 100 MB/s: sixteen at once still take well under the target each.
    for (let i = 0; i < 5; i++) {
      void s.acquire(PIECE)
      s.release(100e6, t0 + 5000 + i * 1000)
    }
    assert.equal(s.limit(PIECE, t0 + 9000), 16)
    // 25 MB/s over the window: ceil(25e6 × 4 / 4 MiB) + 1 = 25 → 16; with 16 MiB pieces, 7.
    const u = slots()
    for (let i = 0; i < 5; i++) {
      void u.acquire(PIECE)
      u.release(25e6, t0 + i * 1000)
    }
    assert.equal(u.limit(PIECE, t0 + 4000), 16)
    assert.equal(u.limit(16 * MiB, t0 + 4000), 7)
    // Nothing sent for a whole window: back to the minimum.
    assert.equal(u.limit(PIECE, t0 + 20_000), 4)
  })

  test('never more at once than the limit; waiters go in order', async () => {
    const s = slots()
    const order: number[] = []
    for (let i = 0; i < 4; i++) await s.acquire(PIECE)
    assert.equal(s.inUse, 4)
    const waiting = [4, 5, 6].map((i) => s.acquire(PIECE).then(() => order.push(i)))
    await new Promise((r) => setImmediate(r))
    assert.deepEqual(order, [])
    s.release(0)
    await new Promise((r) => setImmediate(r))
    assert.deepEqual(order, [4])
    assert.equal(s.inUse, 4)
    s.release(0)
    s.release(0)
    await Promise.all(waiting)
    assert.deepEqual(order, [4, 5, 6])
    assert.equal(s.inUse, 4)
  })
})
