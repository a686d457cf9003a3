/**
 * The DHT provider search of a downloader (real libp2p nodes on loopback): a holder it is not
 * connected to is found through the DHT, and no search is made once the blob has
 * `enoughSessions` sessions with peers that hold it or download it (a search costs DHT queries
 * on every peer it reaches). Sessions with peers that have nothing of it do not count: a node of
 * a large fleet is connected to dozens of those.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { afterEach, describe, it } from 'node:test'
import { parseDigest } from '../../src/oci/digest.js'
import type { ExchangeInit } from '../../src/swarm/exchange.js'
import type { BlobSwarm } from '../../src/transfer/contracts.js'
import { ExchangeGroup, type ExchangeNode, FullBlob, PIECE } from '../helpers/exchange.js'
import { waitFor } from '../helpers/swarm.js'

const PIECES = 2

async function connect(from: ExchangeNode, to: ExchangeNode): Promise<void> {
  const addr = to.node.libp2p.getMultiaddrs()[0]
  if (addr === undefined) throw new Error('listens nowhere')
  await from.node.libp2p.dial(addr)
  for (let i = 0; i < 500 && !to.node.isConnected(from.node.peerId); i++) await new Promise((r) => setTimeout(r, 10))
}

/** Polls (bounded) until `swarm` has a session with `peer` whose Hello says it holds piece 0. */
async function holderSeen(swarm: BlobSwarm, peer: string, ms: number): Promise<boolean> {
  for (const until = Date.now() + ms; Date.now() < until; ) {
    if (swarm.peers().some((p) => p.id === peer && p.has(0))) return true
    await new Promise((r) => setTimeout(r, 50))
  }
  return false
}

/** Counts the announcements (provides) `node` makes. */
function spyProvides(node: ExchangeNode): { count: number } {
  const seen = { count: 0 }
  const swarmNode = node.node
  const provide = swarmNode.provide.bind(swarmNode)
  swarmNode.provide = async (digest, signal) => {
    seen.count++
    await provide(digest, signal)
  }
  return seen
}

/** Counts the DHT provider searches `node` makes and records the peers they found. */
function spySearches(node: ExchangeNode): { rounds: number; found: Set<string> } {
  const seen = { rounds: 0, found: new Set<string>() }
  const swarmNode = node.node
  const search = swarmNode.findProviders.bind(swarmNode)
  swarmNode.findProviders = async function* (digest, signal) {
    seen.rounds++
    for await (const peer of search(digest, signal)) {
      seen.found.add(peer.toString())
      yield peer
    }
  }
  return seen
}

describe('DHT provider search (real libp2p)', () => {
  let group: ExchangeGroup | undefined

  afterEach(async () => {
    await group?.stop()
    group = undefined
  })

  /**
   * holder — relay — puller: the puller's only connection is the relay, which has nothing (or,
   * with `relayHolds`, the whole blob too). The holder has told the DHT (the relay) that it
   * provides the blob before the puller joined the relay. (The DHT's own upkeep may still connect
   * the puller to the holder — a query of the relay's routing table — so the tests look at the
   * searches themselves, not at connections.)
   */
  async function line(pullerInit: ExchangeInit, relayHolds = false) {
    group = new ExchangeGroup()
    const data = randomBytes(PIECES * PIECE)
    const digest = parseDigest(`sha256:${createHash('sha256').update(data).digest('hex')}`)
    const blob = new FullBlob(data)
    const holder = await group.start('holder', async (d) => (d.value === digest.value ? blob : undefined))
    const relay = await group.start('relay', async (d) => (relayHolds && d.value === digest.value ? blob : undefined))
    const puller = await group.start('puller', async () => undefined, pullerInit)
    await connect(holder, relay)
    await holder.node.provide(digest.value, AbortSignal.timeout(10_000))
    await connect(puller, relay)
    const searches = spySearches(puller)
    const swarm = group.join(puller, digest, data.length, PIECES)
    return { holder, relay, swarm, searches }
  }

  it('a downloader with few sessions finds a holder it is not connected to', async () => {
    const { holder, swarm, searches } = await line({})
    const id = holder.node.peerId.toString()
    assert.ok(await holderSeen(swarm, id, 15_000), 'a session with the holder')
    assert.ok(searches.rounds >= 1, 'a provider search was made')
    assert.ok(searches.found.has(id), 'the search found the holder')
  })

  it('sessions with peers that have nothing of the blob do not stop the search', async () => {
    // One session (the relay's) would be "enough" if every session counted.
    const { holder, swarm, searches } = await line({ enoughSessions: 1 })
    const id = holder.node.peerId.toString()
    assert.ok(await holderSeen(swarm, id, 15_000), 'a session with the holder')
    assert.ok(searches.rounds >= 1, 'a provider search was made')
    assert.ok(searches.found.has(id), 'the search found the holder')
  })

  it('a downloader in session with a few peers that hold the blob searches one interval later, not at once', async () => {
    // The relay holds it: one such peer, which is `provideBelowSessions` here and not `enoughSessions`.
    const { relay, swarm, searches } = await line(
      { provideBelowSessions: 1, enoughSessions: 2, findProvidersIntervalMs: 2_000 },
      true,
    )
    assert.ok(await holderSeen(swarm, relay.node.peerId.toString(), 5_000), 'a session with the relay')
    // The discovery settles within a second here; a search at once would be counted by now.
    await new Promise((r) => setTimeout(r, 1_000))
    assert.equal(searches.rounds, 0, 'no provider search right after the discovery')
    await waitFor('a provider search after one interval', () => searches.rounds >= 1, 6_000, 50)
  })

  /**
   * A small swarm, every node connected to every other: `puller`, whose last walk of the DHT (a
   * neighbour round) found the others, and two peers that have nothing of the blob.
   */
  async function smallSwarm(pullerInit: ExchangeInit) {
    group = new ExchangeGroup()
    const data = randomBytes(PIECES * PIECE)
    const digest = parseDigest(`sha256:${createHash('sha256').update(data).digest('hex')}`)
    const a = await group.start('a', async () => undefined)
    const b = await group.start('b', async () => undefined)
    const puller = await group.start('puller', async () => undefined, pullerInit)
    await connect(a, b)
    await connect(puller, a)
    await connect(puller, b)
    await puller.node.meetNeighbours()
    assert.equal(puller.node.smallSwarm()?.length, 2, 'the walk found the swarm whole')
    return { data, digest, a, puller }
  }

  it('a downloader in session with every peer of a small swarm neither announces nor searches', async () => {
    const { data, digest, puller } = await smallSwarm({ findProvidersIntervalMs: 1_000 })
    const provides = spyProvides(puller)
    const searches = spySearches(puller)
    const swarm = group?.join(puller, digest, data.length, PIECES)
    assert.ok(swarm !== undefined)
    await swarm.ready
    assert.equal(swarm.peers().length, 2, 'sessions with both peers')
    // Unanswered or without this rule, the search and the announcement come at once; a few
    // intervals go by here.
    await new Promise((r) => setTimeout(r, 3_500))
    assert.equal(searches.rounds, 0, 'no provider search')
    assert.equal(provides.count, 0, 'no announcement')
  })

  it('a holder that connects to a small swarm to announce the blob is searched for and found', async () => {
    const { data, digest, a, puller } = await smallSwarm({ findProvidersIntervalMs: 1_000 })
    const searches = spySearches(puller)
    const swarm = group?.join(puller, digest, data.length, PIECES)
    assert.ok(swarm !== undefined && group !== undefined)
    await swarm.ready
    const blob = new FullBlob(data)
    const holder = await group.start('holder', async (d) => (d.value === digest.value ? blob : undefined))
    await connect(holder, a)
    // The announcement's walk reaches the puller through `a` and stores the record there.
    await holder.node.provide(digest.value, AbortSignal.timeout(10_000))
    const id = holder.node.peerId.toString()
    assert.ok(await holderSeen(swarm, id, 10_000), 'a session with the holder')
    assert.ok(searches.found.has(id), 'a search found the holder')
  })

  it('a downloader in session with enough peers that hold the blob does not search', async () => {
    const { relay, swarm, searches } = await line({ enoughSessions: 1 }, true)
    // The search would be made within the first second or so (the cases above): wait past it.
    assert.ok(await holderSeen(swarm, relay.node.peerId.toString(), 5_000), 'a session with the relay')
    await new Promise((r) => setTimeout(r, 4_000))
    assert.equal(searches.rounds, 0, 'no provider search')
  })
})
