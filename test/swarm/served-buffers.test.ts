/**
 * A holder reads the pieces it serves into buffers it uses again, and only once their recipient
 * said every byte came from it: real libp2p nodes on loopback, one holding a blob, one fetching its
 * pieces one after another. A recipient whose Have does not say so (a peer of an older version, or
 * a piece it got elsewhere) leaves the buffer to the collector: each piece is read into a new one.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, describe, it } from 'node:test'
import { ExchangeGroup, PIECE } from '../helpers/exchange.js'

const PIECES = 6

describe('swarm: buffers of served pieces', { timeout: 60_000 }, () => {
  const group = new ExchangeGroup()

  after(async () => {
    await group.stop()
  })

  for (const says of [true, false]) {
    it(says ? 'used again once the recipient says every byte came' : 'not used again on a plain Have', async () => {
      const { data, digest, blob, holder, puller } = await group.holderAndPuller(PIECES, `holder-${says}`)
      const swarm = group.join(puller, digest, data.length, PIECES)
      await swarm.ready
      const from = swarm.peers().find((p) => p.id === holder.node.peerId.toString())
      assert.ok(from !== undefined, 'the puller is in session with the holder')
      for (let i = 0; i < PIECES; i++) {
        const piece = await swarm.request(from, i, AbortSignal.timeout(20_000))
        assert.ok(Buffer.from(piece).equals(data.subarray(i * PIECE, (i + 1) * PIECE)), `piece ${i}`)
        const hash = createHash('sha256').update(piece).digest()
        swarm.release(piece)
        // What a transfer does once the piece is stored: the holder waits for this Have.
        swarm.announceHave(i, hash, says ? from.id : undefined)
        // The holder's serve ends when the Have comes (its buffer goes back to the pool, or not).
        if (says) {
          for (let k = 0; k < 500 && holder.exchange.stats.servedBuffersReused <= i; k++) {
            await new Promise((r) => setTimeout(r, 10))
          }
          assert.equal(holder.exchange.stats.servedBuffersReused, i + 1, `piece ${i}'s buffer went back`)
        } else {
          for (let k = 0; k < 500 && holder.exchange.stats.piecesServed <= i; k++)
            await new Promise((r) => setTimeout(r, 10))
        }
      }
      assert.equal(blob.intoBuffers.length, PIECES, 'every piece was read into a buffer the exchange gave')
      const distinct = new Set(blob.intoBuffers).size
      if (says) assert.equal(distinct, 1, `${distinct} buffers for ${PIECES} pieces served one after another`)
      else {
        assert.equal(distinct, PIECES)
        assert.equal(holder.exchange.stats.servedBuffersReused, 0)
      }
    })
  }
})
