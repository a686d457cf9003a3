/**
 * A queued piece handed to its new rendezvous owner, over real libp2p nodes on loopback: the first
 * node of a staggered rollout queued it; a node that came later owns it now. The newcomer may claim
 * it (once), and nobody holds the first node's claim any longer; a bystander, and the first node
 * itself, hold it as the newcomer's queued claim, so that neither fetches it.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import type { BlobSwarm } from '../../src/transfer/contracts.js'
import { ExchangeGroup, randomBlob } from '../helpers/exchange.js'
import { waitFor } from '../helpers/swarm.js'

describe('swarm: a queued piece handed to its new owner', { timeout: 60_000 }, () => {
  const group = new ExchangeGroup()

  after(async () => {
    await group.stop()
  })

  it('the newcomer may claim it once; the first node and a bystander see it queued at the newcomer', async () => {
    const { data, digest } = randomBlob(3)
    const none = async () => undefined
    const first = await group.start('first', none)
    const newcomer = await group.start('newcomer', none)
    const bystander = await group.start('bystander', none)
    await group.connect(first, newcomer)
    await group.connect(first, bystander)
    await group.connect(newcomer, bystander)

    const swarms = [first, newcomer, bystander].map((n) => group.join(n, digest, data.length, 3))
    const [f, n, b] = swarms as [BlobSwarm, BlobSwarm, BlobSwarm]
    await Promise.all(swarms.map((s) => s.ready))
    await waitFor('every node in session with both others', () => swarms.every((s) => s.peers().length === 2))
    assert.ok(
      f.peers().every((p) => p.takesHandoffs === true),
      'peers of this version say they take hand-offs',
    )

    f.announceClaim(1, { queued: true })
    f.announceClaim(2, { queued: true })
    await waitFor('the queued claims heard', () => n.claimOf(2)?.peer === f.selfId && b.claimOf(2)?.peer === f.selfId)

    f.handOffClaim?.(1, n.selfId)
    await waitFor('the bystander hears the hand-off', () => b.claimOf(1)?.peer === n.selfId)
    const seen = b.claimOf(1)
    assert.equal(seen?.queued, true, "the newcomer's queued claim: others may still take it over from its queue")
    assert.equal(seen?.takeover, false)
    assert.equal(b.yieldedTo?.(1), undefined, 'not a go-ahead')
    assert.equal(f.claimOf(1)?.peer, n.selfId, 'the first node holds it as the newcomer’s at once')

    await waitFor('the newcomer hears it', () => n.claimOf(1) === undefined)
    assert.equal(n.takeHandOff?.(1), true, 'the newcomer may claim it')
    assert.equal(n.takeHandOff?.(1), false, 'once')
    assert.equal(n.takeHandOff?.(2), false, 'only the piece handed')
    assert.equal(n.claimOf(2)?.peer, f.selfId, 'the other queued claim stays')
    assert.equal(b.takeHandOff?.(1), false, 'the bystander was not handed it')

    // The newcomer claims it: everyone holds the newcomer's own claim from then on.
    n.announceClaim(1, { queued: true })
    await waitFor('the claim heard', () => f.claimOf(1)?.peer === n.selfId && b.claimOf(1)?.peer === n.selfId)

    // A later transfer of the blob on the newcomer (the first one failed) is not handed it again.
    f.handOffClaim?.(2, n.selfId)
    await waitFor('the second hand-off heard', () => n.claimOf(2) === undefined)
    n.close()
    const again = group.join(newcomer, digest, data.length, 3)
    assert.equal(again.takeHandOff?.(2), false, "an earlier transfer's hand-off is not reused")
  })
})
