/**
 * A session lost while its peer stays connected (one of two streams opened at once dropped, or the
 * peer closed it) must not make a downloader think the holder is gone: real libp2p nodes on
 * loopback, one holding a blob, one downloading it. The holder's end of their session is aborted
 * (fault injection); the downloader counts the holder as rejoining (its transfer then fetches
 * nothing from the origin) and opens a new session by itself, over which the piece comes.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import type { Stream } from '@libp2p/interface'
import type { Digest } from '../../src/oci/digest.js'
import type { PieceExchange } from '../../src/swarm/exchange.js'
import { ExchangeGroup } from '../helpers/exchange.js'

/** The holder's own end of its session with `peer` (reached into, to inject the fault). */
function sessionStream(exchange: PieceExchange, digest: Digest, peer: string): Stream | undefined {
  const inner = exchange as unknown as { blobs: Map<string, { sessions: Map<string, { stream: Stream }> }> }
  return inner.blobs.get(digest.hex)?.sessions.get(peer)?.stream
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('swarm: a lost session with a still-connected holder', { timeout: 60_000 }, () => {
  const group = new ExchangeGroup()

  after(async () => {
    await group.stop()
  })

  it('counts the holder as rejoining, reopens the session by itself, and gets the piece over it', async () => {
    const { data, digest, blob, holder, puller } = await group.holderAndPuller(2)

    const swarm = group.join(puller, digest, data.length, 2)
    await swarm.ready
    const holderId = holder.node.peerId.toString()
    const holderOf = () => swarm.peers().find((p) => p.id === holderId)
    assert.ok(holderOf()?.has(0), 'in session with the holder')
    assert.equal(swarm.rejoining(), 0)

    const stream = sessionStream(holder.exchange, digest, puller.node.peerId.toString())
    assert.ok(stream !== undefined, "the holder's end of the session")
    stream.abort(new Error('injected fault'))

    // The puller sees the session end; the holder is still connected, so it counts as rejoining.
    let rejoiningWhileGone = -1
    for (let i = 0; i < 300 && rejoiningWhileGone < 0; i++) {
      if (holderOf() === undefined) rejoiningWhileGone = swarm.rejoining()
      else await sleep(5)
    }
    assert.equal(rejoiningWhileGone, 1, 'the holder was gone from the session list without counting as rejoining')
    assert.ok(puller.node.isConnected(holder.node.peerId), 'the connection itself stays')

    // No stream comes from the holder (it downloads nothing): the puller opens one.
    for (let i = 0; i < 100 && holderOf() === undefined; i++) await sleep(50)
    const back = holderOf()
    assert.ok(back?.has(0) === true, 'the session with the holder came back within 5 s')
    assert.equal(swarm.rejoining(), 0, 'rejoined')
    const got = await swarm.request(back, 1, AbortSignal.timeout(10_000))
    assert.ok(Buffer.from(got).equals(blob.piece(1)))
  })
})
