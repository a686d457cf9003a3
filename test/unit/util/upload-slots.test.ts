import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { UploadSlots } from '../../../src/util/limits.js'

function slots(): UploadSlots {
  return new UploadSlots({ min: 4, max: 16, targetMs: 4_000 })
}

describe('UploadSlots', () => {
  test('the minimum at the start', () => {
    assert.equal(slots().limit, 4)
  })

  test('fast deliveries add slots up to the maximum; slow ones take them back to the minimum', async () => {
    const s = slots()
    // A fast link: every piece arrives within the target.
    for (let i = 0; i < 30; i++) {
      await s.acquire()
      s.release(300)
    }
    assert.equal(s.limit, 16)
    // Between the target and twice it: no change.
    await s.acquire()
    s.release(6_000)
    assert.equal(s.limit, 16)
    // A slow link (16 at once on 20 Mbit/s: 27 s each): back down, never below the minimum.
    for (let i = 0; i < 30; i++) {
      await s.acquire()
      s.release(27_000)
    }
    assert.equal(s.limit, 4)
    // Skipped or unconfirmed pieces say nothing about the link.
    for (let i = 0; i < 5; i++) {
      await s.acquire()
      s.release()
    }
    assert.equal(s.limit, 4)
  })

  test('never more at once than the limit; waiters go in order', async () => {
    const s = slots()
    const order: number[] = []
    for (let i = 0; i < 4; i++) await s.acquire()
    assert.equal(s.inUse, 4)
    const waiting = [4, 5, 6].map((i) => s.acquire().then(() => order.push(i)))
    await new Promise((r) => setImmediate(r))
    assert.deepEqual(order, [])
    s.release()
    await new Promise((r) => setImmediate(r))
    assert.deepEqual(order, [4])
    assert.equal(s.inUse, 4)
    // A fast delivery adds a slot: the next waiter goes without another release.
    s.release(100)
    await new Promise((r) => setImmediate(r))
    assert.deepEqual(order, [4, 5, 6])
    assert.equal(s.inUse, 5)
    assert.equal(s.limit, 5)
    await Promise.all(waiting)
  })
})
