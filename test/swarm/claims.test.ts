/**
 * Claims heard from peers, over real libp2p nodes on loopback.
 * - A claimer whose session alone ended (a stream dropped, its connection open) is probably still
 *   fetching: its claim is kept for a grace. A claimer with no connection left died or left: its
 *   claims go at once, so that the others fetch its pieces without waiting out the grace (lab P3:
 *   three of ten daemons killed mid-herd).
 * - Of queued claims that race, the one rendezvous ranks highest is kept, whatever the order they
 *   come in, so that every claimant but the highest yields; a claim that the piece is being
 *   fetched replaces it.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { PIECES_PROTOCOL } from '../../src/swarm/exchange.js'
import type { BlobSwarm } from '../../src/transfer/contracts.js'
import { rendezvousScore } from '../../src/transfer/rendezvous.js'
import { ExchangeGroup, randomBlob } from '../helpers/exchange.js'
import { waitFor } from '../helpers/swarm.js'

describe('swarm: claims of a peer whose session ended', { timeout: 60_000 }, () => {
  const group = new ExchangeGroup()

  after(async () => {
    await group.stop()
  })

  it('kept while the claimer stays connected, dropped at once when its connection is gone', async () => {
    const { data, digest } = randomBlob(4)
    const none = async () => undefined
    const claimer = await group.start('claimer', none)
    const watcher = await group.start('watcher', none)
    await group.connect(claimer, watcher)
    const swarms = [claimer, watcher].map((n) => group.join(n, digest, data.length, 4))
    const [c, w] = swarms as [BlobSwarm, BlobSwarm]
    await Promise.all(swarms.map((s) => s.ready))
    await waitFor('both in session', () => swarms.every((s) => s.peers().length === 1))

    c.announceClaim(1, { queued: true })
    c.announceClaim(2, {})
    await waitFor('the claims heard', () => w.claimOf(1)?.queued === true && w.claimOf(2) !== undefined)

    // The piece streams dropped, the connection kept: the claims stay (the grace).
    const conns = watcher.node.libp2p.getConnections(claimer.node.peerId)
    let aborted = 0
    for (const conn of conns) {
      for (const s of conn.streams) {
        if (s.protocol === PIECES_PROTOCOL) {
          s.abort(new Error('test: session dropped'))
          aborted++
        }
      }
    }
    assert.ok(aborted > 0, 'a piece stream to abort')
    await new Promise((r) => setTimeout(r, 300))
    assert.equal(w.claimOf(1)?.peer, c.selfId, 'a claim outlives a dropped session of a connected claimer')
    assert.equal(w.claimOf(2)?.peer, c.selfId)

    // The claimer's node goes away: no connection left, its claims go without the 10 s grace.
    const claimerId = claimer.node.peerId
    const gone = Date.now()
    await claimer.exchange.stop()
    await claimer.node.stop()
    await waitFor('the claimer disconnected', () => !watcher.node.isConnected(claimerId), 5_000)
    await waitFor('the claims dropped', () => w.claimOf(1) === undefined && w.claimOf(2) === undefined, 2_000)
    assert.ok(Date.now() - gone < 5_000, `claims dropped ${Date.now() - gone} ms after the claimer left`)
  })

  it('of queued claims that race, the highest-ranked is kept in either order; a fetching claim replaces it', async () => {
    const { data, digest } = randomBlob(4)
    const none = async () => undefined
    const a = await group.start('racer-a', none)
    const b = await group.start('racer-b', none)
    const watcher = await group.start('race-watcher', none)
    await group.connect(a, watcher)
    await group.connect(b, watcher)
    const [sa, sb, w] = [a, b, watcher].map((n) => group.join(n, digest, data.length, 4)) as [
      BlobSwarm,
      BlobSwarm,
      BlobSwarm,
    ]
    await Promise.all([sa.ready, sb.ready, w.ready])
    await waitFor('the watcher in session with both', () => w.peers().length === 2)
    const ranked = (i: number): [BlobSwarm, BlobSwarm] =>
      rendezvousScore(sa.selfId, digest.value, i) > rendezvousScore(sb.selfId, digest.value, i) ? [sa, sb] : [sb, sa]

    // Piece 0: the higher first, then the lower. A marker claim (piece 3) after it, on the same
    // session, tells that the lower's claim has come.
    const [high0, low0] = ranked(0)
    high0.announceClaim(0, { queued: true })
    await waitFor('the first claim heard', () => w.claimOf(0)?.peer === high0.selfId)
    low0.announceClaim(0, { queued: true })
    low0.announceClaim(3, { queued: true })
    await waitFor('the marker heard', () => w.claimOf(3)?.peer === low0.selfId)
    assert.equal(w.claimOf(0)?.peer, high0.selfId, 'a lower-ranked racing claim does not replace a higher one')

    // Piece 1: the lower first, then the higher: the higher replaces it.
    const [high1, low1] = ranked(1)
    low1.announceClaim(1, { queued: true })
    await waitFor('the lower claim heard', () => w.claimOf(1)?.peer === low1.selfId)
    high1.announceClaim(1, { queued: true })
    await waitFor('the higher claim kept', () => w.claimOf(1)?.peer === high1.selfId)

    // Piece 0 again: the lower one says it is fetching it — that fetch is under way, it counts.
    low0.announceClaim(0, {})
    await waitFor('the fetching claim kept', () => w.claimOf(0)?.peer === low0.selfId && w.claimOf(0)?.queued === false)
  })
})
