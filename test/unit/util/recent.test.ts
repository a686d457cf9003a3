import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { RecentMap } from '../../../src/util/recent.js'

describe('RecentMap', () => {
  it('a value is there until its time is up', () => {
    const m = new RecentMap<number>(1_000, 10)
    m.set('a', 1, 5_000)
    assert.equal(m.get('a', 5_999), 1)
    assert.equal(m.get('a', 6_000), undefined)
    assert.equal(m.get('b', 5_000), undefined)
  })

  it('over the bound the oldest go first; a key set again counts as new', () => {
    const m = new RecentMap<string>(60_000, 2)
    m.set('a', 'A', 0)
    m.set('b', 'B', 1)
    m.set('a', 'A2', 2)
    m.set('c', 'C', 3)
    assert.equal(m.size, 2)
    assert.equal(m.get('b', 3), undefined)
    assert.equal(m.get('a', 3), 'A2')
    assert.equal(m.get('c', 3), 'C')
  })
})
