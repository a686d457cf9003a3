import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { OriginGate } from '../../../src/transfer/origin-gate.js'

describe('OriginGate', () => {
  test("a node's share of the swarm's origin fetches shrinks with the downloaders, never below one", () => {
    const gate = new OriginGate(4)
    assert.deepEqual(
      [1, 2, 3, 4, 10, 500].map((d) => gate.limitFor(d)),
      [4, 2, 2, 1, 1, 1],
    )
    assert.equal(gate.limitFor(0), 4)
  })

  test('slots up to the limit; the lowest waiting priority goes first when one comes free', () => {
    const gate = new OriginGate(4)
    const [a, b, c] = [{}, {}, {}]
    const woken: string[] = []
    assert.equal(
      gate.tryTake(a, 0.5, 1, () => woken.push('a')),
      true,
    )
    assert.equal(
      gate.tryTake(b, 0.9, 1, () => woken.push('b')),
      false,
      'over the limit',
    )
    assert.equal(
      gate.tryTake(c, 0.1, 1, () => woken.push('c')),
      false,
    )
    gate.release()
    assert.deepEqual(woken.sort(), ['b', 'c'], 'every waiter is woken')
    assert.equal(
      gate.tryTake(b, 0.9, 1, () => {}),
      false,
      'c waits with a lower priority',
    )
    assert.equal(
      gate.tryTake(c, 0.1, 1, () => {}),
      true,
    )
    assert.equal(gate.inUse, 1)
  })

  test('a waiter that wants nothing any more steps aside and the others are woken', () => {
    const gate = new OriginGate(4)
    const [a, b, c] = [{}, {}, {}]
    assert.equal(
      gate.tryTake(a, 0, 1, () => {}),
      true,
    )
    let bWoken = 0
    assert.equal(
      gate.tryTake(b, 0.2, 1, () => bWoken++),
      false,
    )
    assert.equal(
      gate.tryTake(c, 0.7, 1, () => {}),
      false,
    )
    gate.release()
    assert.equal(bWoken, 1)
    // b no longer needs the origin (a peer had its piece): c is no longer behind it.
    gate.forget(b)
    assert.equal(
      gate.tryTake(c, 0.7, 1, () => {}),
      true,
    )
    gate.forget(a)
    assert.equal(bWoken, 1, 'forgetting one that was not waiting wakes nobody')
  })

  test('a larger limit (fewer downloaders) lets a later transfer in beside the first', () => {
    const gate = new OriginGate(4)
    assert.equal(
      gate.tryTake({}, 0, 2, () => {}),
      true,
    )
    assert.equal(
      gate.tryTake({}, 0.3, 2, () => {}),
      true,
    )
    assert.equal(
      gate.tryTake({}, 0.1, 2, () => {}),
      false,
    )
    gate.progress(1234)
    assert.equal(gate.lastProgress, 1234)
  })
})
