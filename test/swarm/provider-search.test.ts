/**
 * The DHT provider search of a downloader (real libp2p nodes on loopback): a holder it is not
 * connected to is found through the DHT, and no search is made once the blob has
 * `enoughSessions` sessions with the peers it is connected to (a search costs DHT queries on
 * every peer it reaches).
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { afterEach, describe, it } from 'node:test'
import { parseDigest } from '../../src/oci/digest.js'
import type { ExchangeInit } from '../../src/swarm/exchange.js'
import type { BlobSwarm } from '../../src/transfer/contracts.js'
import { ExchangeGroup, type ExchangeNode, FullBlob, PIECE } from '../helpers/exchange.js'

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

describe('DHT provider search (real libp2p)', () => {
  let group: ExchangeGroup | undefined

  afterEach(async () => {
    await group?.stop()
    group = undefined
  })

  /**
   * holder — relay — puller: the puller's only connection is the relay, which has nothing. The
   * holder has told the DHT (the relay) that it provides the blob.
   */
  async function line(pullerInit: ExchangeInit) {
    group = new ExchangeGroup()
    const data = randomBytes(PIECES * PIECE)
    const digest = parseDigest(`sha256:${createHash('sha256').update(data).digest('hex')}`)
    const blob = new FullBlob(data)
    const holder = await group.start('holder', async (d) => (d.value === digest.value ? blob : undefined))
    const relay = await group.start('relay', async () => undefined)
    const puller = await group.start('puller', async () => undefined, pullerInit)
    await connect(holder, relay)
    await connect(puller, relay)
    await holder.node.provide(digest.value, AbortSignal.timeout(10_000))
    assert.equal(puller.node.isConnected(holder.node.peerId), false, 'the puller does not know the holder yet')
    const swarm = group.join(puller, digest, data.length, PIECES)
    return { holder, swarm }
  }

  it('a downloader with few sessions finds a holder it is not connected to', async () => {
    const { holder, swarm } = await line({})
    assert.ok(await holderSeen(swarm, holder.node.peerId.toString(), 15_000), 'the holder was found through the DHT')
  })

  it('a downloader with enough sessions does not search', async () => {
    const { holder, swarm } = await line({ enoughSessions: 1 })
    // The search would find the holder within a second or two (the case above); it is not made.
    assert.equal(await holderSeen(swarm, holder.node.peerId.toString(), 4_000), false)
    assert.equal(swarm.peers().length, 1, 'one session: the relay')
  })
})
