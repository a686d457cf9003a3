import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { UploadSlots } from '../../../src/util/limits.js'

const MiB = 1024 * 1024
const PIECE = 4 * MiB

function slots(): UploadSlots {
  return new UploadSlots({ min: 4, max: 32, targetMs: 4_000, windowMs: 5_000 })
}

describe('UploadSlots (sized by the rate delivered)', () => {
  test('the minimum before anything is delivered', () => {
    assert.equal(slots().limit(PIECE), 4)
  })

  test('a busy slow uplink keeps the minimum', () => {
    const s = slots()
    const t0 = Date.now()
    // 20 Mbit/s, always busy: four pieces on their way, one delivered (and another started)
    // every 1.68 s.
    for (let i = 0; i < 4; i++) void s.acquire(PIECE, t0)
    for (let i = 1; i <= 12; i++) {
      s.release(PIECE, t0 + i * 1680)
      void s.acquire(PIECE, t0 + i * 1680)
    }
    const now = t0 + 12 * 1680
    const rate = s.rate(now)
    assert.ok(Math.abs(rate - PIECE / 1.68) < 0.05 * rate, `rate ${rate}`)
    assert.equal(s.limit(PIECE, now), 4)
  })

  test('a fast uplink asked in bursts opens every slot, and idle time does not make it slow', () => {
    const s = slots()
    const t0 = Date.now()
    // Eight pieces delivered within half a second: 32 MiB over one second at least.
    for (let i = 0; i < 8; i++) void s.acquire(PIECE, t0)
    for (let i = 0; i < 8; i++) s.release(PIECE, t0 + 60 * i)
    assert.equal(s.limit(PIECE, t0 + 500), 32)
    // Larger pieces, fewer slots: 32 MiB/s × 4 s / 16 MiB + 1.
    assert.equal(s.limit(16 * MiB, t0 + 500), 9)
    // A minute with nothing asked: the window is busy time, so the rate stands.
    assert.equal(s.limit(PIECE, t0 + 60_000), 32)
    // Five busy seconds delivering nothing (all unconfirmed) push the deliveries out of the window.
    void s.acquire(PIECE, t0 + 60_000)
    assert.equal(s.limit(PIECE, t0 + 66_000), 4)
  })

  test('skipped or unconfirmed pieces do not count as delivered', () => {
    const s = slots()
    for (let i = 0; i < 10; i++) {
      void s.acquire(PIECE)
      s.release(0)
    }
    assert.equal(s.rate(), 0)
    assert.equal(s.limit(PIECE), 4)
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
