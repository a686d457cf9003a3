import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { BufferPool } from '../../../src/util/buffer-pool.js'

describe('BufferPool', () => {
  test('a buffer given back is taken again (any view of it); sizes take the smallest class that fits', () => {
    const pool = new BufferPool([1024, 4096], 10_000)
    const a = pool.take(1000)
    assert.equal(a.byteLength, 1000)
    assert.equal(a.buffer.byteLength, 1024)
    pool.give(a.subarray(10, 20))
    assert.equal(pool.held, 1024)
    const b = pool.take(900)
    assert.equal(b.buffer, a.buffer, 'the same memory again')
    assert.equal(b.byteLength, 900)
    assert.equal(pool.held, 0)
    assert.equal(pool.take(2000).buffer.byteLength, 4096)
  })

  test('foreign buffers, buffers over the largest class and second gives are ignored; idle bytes are capped', () => {
    const pool = new BufferPool([1024], 2048)
    pool.give(new Uint8Array(1024))
    assert.equal(pool.held, 0, 'not from the pool')
    const big = pool.take(5000)
    assert.equal(big.byteLength, 5000)
    pool.give(big)
    assert.equal(pool.held, 0, 'over the largest class: a plain buffer')
    const [x, y, z] = [pool.take(1), pool.take(1), pool.take(1)]
    pool.give(x)
    pool.give(x)
    assert.equal(pool.held, 1024, 'given twice, kept once')
    pool.give(y)
    pool.give(z)
    assert.equal(pool.held, 2048, 'the third is over the cap and left to the collector')
    const taken = new Set([pool.take(1).buffer, pool.take(1).buffer, pool.take(1).buffer])
    assert.equal(taken.size, 3, 'no buffer handed out twice')
  })

  test('with idleMs, what is kept is dropped once nothing was taken for that long', async () => {
    const pool = new BufferPool([1024], 10_000, 30)
    const a = pool.take(1)
    pool.give(a)
    assert.equal(pool.held, 1024)
    // Taken and given back within every interval: kept.
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 20))
      const b = pool.take(1)
      assert.equal(b.buffer, a.buffer)
      pool.give(b)
    }
    assert.equal(pool.held, 1024)
    // Nothing taken for two intervals: dropped, and the old buffer is foreign now.
    await new Promise((r) => setTimeout(r, 100))
    assert.equal(pool.held, 0)
    pool.give(a)
    assert.equal(pool.held, 0)
    assert.notEqual(pool.take(1).buffer, a.buffer)
  })
})
