import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { OutgoingPieces } from '../../../src/swarm/outgoing.js'

describe('OutgoingPieces', () => {
  test('a piece counts as on its way from queued to announced, or until the confirm bound', () => {
    const o = new OutgoingPieces(15_000)
    const t = 1_000_000
    assert.equal(o.toOthers(3, 'b', t), false)
    o.start(3, 'a')
    assert.equal(o.toOthers(3, 'b', t), true, 'queued for a')
    assert.equal(o.toOthers(3, 'a', t), false, 'a itself asking again is not deferred')
    o.sent(3, 'a', t)
    assert.equal(o.toOthers(3, 'b', t + 14_000), true, 'sent, not yet announced')
    assert.equal(o.toOthers(3, 'b', t + 15_001), false, 'the bound')
    assert.equal(o.size, 0)
    o.start(4, 'a')
    o.sent(4, 'a', t)
    o.done(4, 'a')
    assert.equal(o.toOthers(4, 'b', t + 1), false, 'announced')
    o.start(5, 'a')
    o.done(5, 'a')
    assert.equal(o.toOthers(5, 'b', t), false, 'skipped or failed')
    assert.equal(o.size, 0)
  })

  test('sentToOthers counts only sends handed to the stream and not yet announced, not queued ones', () => {
    const o = new OutgoingPieces(15_000)
    const t = 1_000_000
    o.start(3, 'a')
    o.start(3, 'b')
    assert.equal(o.sentToOthers(3, 'b', t), false, 'both only queued')
    o.sent(3, 'a', t)
    assert.equal(o.sentToOthers(3, 'b', t + 1), true)
    assert.equal(o.sentToOthers(3, 'a', t + 1), false, 'not to others for a itself')
    assert.equal(o.sentToOthers(3, 'b', t + 15_001), false, 'the bound')
    o.done(3, 'a', 'have')
    assert.equal(o.sentToOthers(3, 'b', t + 1), false, 'announced')
  })

  test('sent() resolves with how the send ended: the Have, the Have that says every byte came, or nothing', async () => {
    const o = new OutgoingPieces(50)
    for (const [i, outcome] of [
      [1, 'have'],
      [2, 'received'],
    ] as const) {
      o.start(i, 'a')
      const p = o.sent(i, 'a')
      o.done(i, 'a', outcome)
      assert.equal(await p, outcome)
    }
    o.start(3, 'a')
    assert.equal(await o.sent(3, 'a'), false, 'no Have within the bound')
    o.start(4, 'a')
    const gone = o.sent(4, 'a')
    o.dropPeer('a')
    assert.equal(await gone, false, 'the peer went')
  })

  test('a queued piece does not expire; sent() for a send not started is ignored', () => {
    const o = new OutgoingPieces(10)
    o.start(1, 'a')
    assert.equal(o.toOthers(1, 'b', Date.now() + 3_600_000), true)
    o.sent(2, 'a')
    assert.equal(o.size, 1)
  })

  test('memory stays bounded: expired entries are dropped past 4096 pieces', () => {
    const o = new OutgoingPieces(10)
    const t = Date.now()
    for (let i = 0; i < 5000; i++) {
      o.start(i, 'a')
      o.sent(i, 'a', t + i)
    }
    assert.ok(o.size <= 4097, `${o.size} entries`)
  })
})
