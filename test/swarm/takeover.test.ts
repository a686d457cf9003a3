/**
 * A takeover's go-ahead over real libp2p nodes on loopback: an owner with a queued claim, a node
 * that takes the piece over, and a bystander. When the owner yields the piece to the taker, the
 * taker learns it may fetch it, and the bystander that the piece is the taker's now (so it neither
 * fetches it nor takes it over itself).
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import type { BlobSwarm } from '../../src/transfer/contracts.js'
import { ExchangeGroup, type ExchangeNode, randomBlob } from '../helpers/exchange.js'
import { waitFor } from '../helpers/swarm.js'

describe('swarm: a queued piece left to the node that took it over', { timeout: 60_000 }, () => {
  const group = new ExchangeGroup()

  after(async () => {
    await group.stop()
  })

  it('the owner yields to the taker: the taker gets the go-ahead, a bystander sees the piece as taken', async () => {
    const { data, digest } = randomBlob(2)
    const none = async () => undefined
    const owner = await group.start('owner', none)
    const taker = await group.start('taker', none)
    const bystander = await group.start('bystander', none)
    await group.connect(owner, taker)
    await group.connect(owner, bystander)
    await group.connect(taker, bystander)

    const swarms = [owner, taker, bystander].map((n) => group.join(n, digest, data.length, 2))
    const [o, t, b] = swarms as [BlobSwarm, BlobSwarm, BlobSwarm]
    await Promise.all(swarms.map((s) => s.ready))
    await waitFor('every node in session with both others', () => swarms.every((s) => s.peers().length === 2))

    o.announceClaim(1, { queued: true })
    await waitFor('the queued claim heard', () => t.claimOf(1)?.queued === true && b.claimOf(1)?.queued === true)
    assert.equal(t.claimOf(1)?.peer, o.selfId)

    t.announceClaim(1, { takeover: true })
    await waitFor('the takeover heard', () => o.claimOf(1)?.takeover === true && b.claimOf(1)?.takeover === true)
    assert.equal(t.yieldedTo?.(1), undefined, 'no go-ahead before the owner says so')

    o.yieldClaim?.(1, t.selfId)
    await waitFor('the go-ahead', () => t.yieldedTo?.(1) === t.selfId && b.yieldedTo?.(1) === t.selfId)
    const seen = b.claimOf(1)
    assert.equal(seen?.peer, t.selfId, "the bystander holds the taker's claim")
    assert.equal(seen?.queued, false, 'not queued: nobody takes it over again')
    assert.equal(seen?.takeover, true)
    assert.equal(o.yieldedTo?.(0), undefined, 'other pieces untouched')

    // A later transfer of the blob on the taker (the first one failed) asks again.
    t.close()
    const again = group.join(taker, digest, data.length, 2)
    assert.equal(again.yieldedTo?.(1), undefined, "an earlier transfer's go-ahead is not reused")
  })

  it('a go-ahead ends when the taker is gone and a new owner claims the piece', async () => {
    const { data, digest } = randomBlob(2)
    const none = async () => undefined
    const nodes = await Promise.all(['owner2', 'taker2', 'heir', 'bystander2'].map((n) => group.start(n, none)))
    const [owner, taker, heir, bystander] = nodes as [ExchangeNode, ExchangeNode, ExchangeNode, ExchangeNode]
    for (const [a, b] of [
      [owner, taker],
      [owner, heir],
      [owner, bystander],
      [taker, heir],
      [taker, bystander],
      [heir, bystander],
    ] as const)
      await group.connect(a, b)
    const swarms = nodes.map((n) => group.join(n, digest, data.length, 2))
    const [o, t, h, b] = swarms as [BlobSwarm, BlobSwarm, BlobSwarm, BlobSwarm]
    await Promise.all(swarms.map((s) => s.ready))
    await waitFor('every node in session with the three others', () => swarms.every((s) => s.peers().length === 3))

    o.announceClaim(1, { queued: true })
    await waitFor('the queued claim heard', () => t.claimOf(1)?.queued === true)
    t.announceClaim(1, { takeover: true })
    await waitFor('the takeover heard', () => o.claimOf(1)?.takeover === true)
    o.yieldClaim?.(1, t.selfId)
    await waitFor('the go-ahead', () => b.yieldedTo?.(1) === t.selfId && h.yieldedTo?.(1) === t.selfId)

    // The taker dies before it fetched the piece; the piece's new owner claims it as its own.
    const takerId = taker.node.peerId
    await taker.exchange.stop()
    await taker.node.stop()
    await waitFor('the taker gone', () => !bystander.node.isConnected(takerId))
    h.announceClaim(1, { queued: true })
    await waitFor('the new claim heard', () => b.claimOf(1)?.peer === h.selfId)
    assert.equal(b.claimOf(1)?.queued, true)
    assert.equal(b.yieldedTo?.(1), undefined, "the dead taker's go-ahead is over")
    // A node that takes it over from the new owner now waits for that owner's word.
    b.announceClaim(1, { takeover: true })
    await waitFor('the takeover heard by the new owner', () => h.claimOf(1)?.takeover === true)
    h.yieldClaim?.(1, b.selfId)
    await waitFor('the new go-ahead', () => b.yieldedTo?.(1) === b.selfId)
  })
})
