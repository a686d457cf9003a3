/**
 * A rolling upgrade, over real libp2p nodes on loopback: a node of another piece protocol version
 * (another piece size rule, so other piece boundaries) is connected to new ones through the DHT
 * and the bootstrap list, yet it is never a piece peer — no session either way, so it never counts
 * among a blob's downloaders (the cold-start rendezvous: a new node never waits for an old node's
 * claim or Have), no ban, and it is dialled for the piece protocol once, not once per blob. The new
 * nodes meanwhile share pieces as usual. A node that refuses every version (its exchange not
 * started yet, as a daemon starting) is not taken for another version.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import type { PeerId } from '@libp2p/interface'
import { PIECES_PROTOCOL } from '../../src/swarm/exchange.js'
import type { BlobSwarm } from '../../src/transfer/contracts.js'
import { ExchangeGroup, type ExchangeNode, FullBlob, randomBlob } from '../helpers/exchange.js'
import { waitFor } from '../helpers/swarm.js'

const OLD_PROTOCOL = '/shoal/pieces/1.0.0'

/** Counts `node`'s piece-protocol dials per peer. */
function countDials(n: ExchangeNode): Map<string, number> {
  const dials = new Map<string, number>()
  const dial = n.node.dialProtocol.bind(n.node)
  n.node.dialProtocol = async (peer: PeerId, protocol: string, signal: AbortSignal) => {
    if (protocol === PIECES_PROTOCOL) dials.set(peer.toString(), (dials.get(peer.toString()) ?? 0) + 1)
    return dial(peer, protocol, signal)
  }
  return dials
}

describe('swarm: nodes of another piece protocol version', { timeout: 60_000 }, () => {
  const group = new ExchangeGroup()

  after(async () => {
    await group.stop()
  })

  it('are never piece peers: no session, no ban, one dial; the new nodes share pieces', async () => {
    assert.notEqual(PIECES_PROTOCOL, OLD_PROTOCOL)
    const first = randomBlob(4)
    const second = randomBlob(3)
    const seedBlob = new FullBlob(first.data)
    const none = async () => undefined
    const old = await group.start('old', none, { protocol: OLD_PROTOCOL })
    const seed = await group.start('new-seed', async (d) => (d.value === first.digest.value ? seedBlob : undefined))
    const puller = await group.start('new-puller', none)
    await group.connect(old, seed)
    await group.connect(old, puller)
    await group.connect(puller, seed)
    await waitFor('all connected', () =>
      [seed, puller].every((n) => n.node.isConnected(old.node.peerId) && old.node.isConnected(n.node.peerId)),
    )
    const dials = countDials(puller)

    // The old node and the new puller both download the first blob; so does the old node's
    // session attempt towards the new ones.
    const oldSwarm = group.join(old, first.digest, first.data.length, 4)
    const swarm = group.join(puller, first.digest, first.data.length, 4)
    await Promise.all([swarm.ready, oldSwarm.ready])
    await waitFor('the new pair in session', () => swarm.peers().length === 1)
    await waitFor('no session being opened', () => swarm.pendingPeers() === 0 && oldSwarm.pendingPeers() === 0)
    const ids = (s: BlobSwarm) => s.peers().map((p) => p.id)
    assert.deepEqual(ids(swarm), [seed.node.peerId.toString()], 'the new puller is in session with the new seed only')
    assert.deepEqual(ids(oldSwarm), [], 'the old node is in session with nobody')
    assert.ok(
      swarm.peers().every((p) => p.id !== old.node.peerId.toString()),
      'the old node is not among the downloaders the rendezvous ranks',
    )
    assert.equal(swarm.rejoining(), 0)

    // Pieces flow between the new nodes as usual.
    const piece = await swarm.request(swarm.peers()[0] as never, 2, AbortSignal.timeout(10_000))
    assert.ok(Buffer.from(piece).equals(seedBlob.piece(2)))

    // A claim of the old node reaches no new node, and nobody was banned for a mismatch.
    oldSwarm.announceClaim(1, {})
    swarm.announceClaim(3, {})
    await new Promise((r) => setTimeout(r, 300))
    assert.equal(swarm.claimOf(1), undefined)
    assert.equal(oldSwarm.claimOf(3), undefined)
    assert.equal(puller.exchange.isBanned(old.node.peerId.toString()), false)
    assert.equal(old.exchange.isBanned(puller.node.peerId.toString()), false)

    // A second blob: the old node is not dialled for the piece protocol again.
    const oldId = old.node.peerId.toString()
    const dialsOfOld = dials.get(oldId) ?? 0
    assert.equal(dialsOfOld, 1, 'the old node was asked once for the first blob')
    const again = group.join(puller, second.digest, second.data.length, 3)
    await again.ready
    assert.equal(again.pendingPeers(), 0)
    assert.equal(dials.get(oldId), 1, 'the old node is not asked again for another blob')
    assert.ok((dials.get(seed.node.peerId.toString()) ?? 0) >= 2, 'the new seed is asked for both blobs')
  })

  it('a node whose exchange has not started yet refuses every version, and is asked again once it has', async () => {
    const none = async () => undefined
    const late = await group.start('late', none, {}, false)
    const asker = await group.start('asker', none)
    await group.connect(asker, late)
    await waitFor('connected', () => asker.node.isConnected(late.node.peerId))
    const dials = countDials(asker)
    const lateId = late.node.peerId.toString()

    const first = randomBlob(2)
    const s1 = group.join(asker, first.digest, first.data.length, 2)
    await s1.ready
    await waitFor('the dial refused', () => dials.get(lateId) === 1 && s1.pendingPeers() === 0)
    assert.equal(s1.peers().length, 0)

    await late.exchange.start()
    const second = randomBlob(2)
    group.join(late, second.digest, second.data.length, 2)
    const s2 = group.join(asker, second.digest, second.data.length, 2)
    await s2.ready
    await waitFor('in session with the late starter', () => s2.peers().some((p) => p.id === lateId))
    assert.equal(dials.get(lateId), 2, 'asked again: a refusal of every version is not "another version"')
  })
})
