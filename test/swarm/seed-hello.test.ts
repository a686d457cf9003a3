/**
 * A seed that opens a piece session itself (to a peer it heard of through peer exchange, or while
 * asking for a blob's size) says in its Hello what it holds: real libp2p nodes on loopback, the
 * seed holding a blob whole with no transfer of it, opening the session to a puller before the
 * puller opens one. The seed sends no Have later, so a Hello that said "nothing" was never
 * corrected, and the puller fetched the seed's pieces from the origin.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import type { Digest } from '../../src/oci/digest.js'
import type { PieceExchange } from '../../src/swarm/exchange.js'
import { ExchangeGroup } from '../helpers/exchange.js'

/** Who opened the session `exchange` has with `peer` about the blob (reached into, for the test's premise). */
function openedBy(exchange: PieceExchange, digest: Digest, peer: string): string {
  const inner = exchange as unknown as { blobs: Map<string, { sessions: Map<string, { outbound: boolean }> }> }
  const s = inner.blobs.get(digest.hex)?.sessions.get(peer)
  return s === undefined ? 'nobody' : s.outbound ? 'this node' : 'the peer'
}

describe('swarm: the Hello of a session a seed opened', { timeout: 60_000 }, () => {
  const group = new ExchangeGroup()

  after(async () => {
    await group.stop()
  })

  it('carries the seed bitfield and piece hashes, and pieces come over that session', async () => {
    const { data, digest, blob, holder: seed, puller } = await group.holderAndPuller(3, 'seed')

    // The seed opens the session (here through findSize, which passes no local blob, like peer
    // exchange does for a node with no transfer of the blob).
    await seed.exchange.findSize(digest, AbortSignal.timeout(10_000))
    const swarm = group.join(puller, digest, data.length, 3)
    await swarm.ready
    const seedId = seed.node.peerId.toString()
    const fromSeed = swarm.peers().find((p) => p.id === seedId)
    assert.ok(fromSeed !== undefined, 'in session with the seed')
    assert.equal(openedBy(puller.exchange, digest, seedId), 'the peer', 'the session the seed opened is the one kept')
    for (let i = 0; i < 3; i++) {
      assert.ok(fromSeed.has(i), `the seed's Hello says it has piece ${i}`)
      assert.deepEqual(Buffer.from(fromSeed.hashOf(i) ?? []), blob.hashOf(i), `piece ${i}'s hash`)
    }
    const got = await swarm.request(fromSeed, 2, AbortSignal.timeout(10_000))
    assert.ok(Buffer.from(got).equals(blob.piece(2)))
  })
})
