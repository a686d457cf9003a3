/**
 * A holder whose upload is busy does not send one piece to two peers at once (super-seeding): real
 * libp2p nodes on loopback, one holding a blob (one sending slot) whose first piece read is held
 * back, two requesters asking for that piece at the same time. One gets it; the other is told
 * "sending to another peer", keeps the holder's bit, and gets the piece when it asks again after
 * the first recipient announced it.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { after, describe, it } from 'node:test'
import { isShoalError } from '../../src/errors.js'
import { parseDigest } from '../../src/oci/digest.js'
import type { BlobSwarm } from '../../src/transfer/contracts.js'
import { ExchangeGroup, FullBlob, PIECE } from '../helpers/exchange.js'

describe('swarm: a piece on its way to one peer is not sent to another at the same time', { timeout: 60_000 }, () => {
  const group = new ExchangeGroup()

  after(async () => {
    await group.stop()
  })

  it('the second requester is deferred, keeps the holder, and gets the piece afterwards', async () => {
    const data = randomBytes(2 * PIECE)
    const digest = parseDigest(`sha256:${createHash('sha256').update(data).digest('hex')}`)
    let go: () => void = () => {}
    const firstRead = new Promise<void>((resolve) => {
      go = resolve
    })
    // The holder's first read of a piece waits for `go`.
    const blob = new FullBlob(data, async (read) => {
      if (read === 0) await firstRead
    })
    // One sending slot: the holder's upload is the bottleneck (only then does it refuse copies).
    const holder = await group.start('holder', async (d) => (d.value === digest.value ? blob : undefined), {
      minInFlight: 1,
      maxInFlight: 1,
    })
    const a = await group.start('a', async () => undefined)
    const b = await group.start('b', async () => undefined)
    const addr = holder.node.libp2p.getMultiaddrs()[0]
    assert.ok(addr !== undefined)
    await a.node.libp2p.dial(addr)
    await b.node.libp2p.dial(addr)

    const swarmA = group.join(a, digest, data.length, 2)
    const swarmB = group.join(b, digest, data.length, 2)
    await Promise.all([swarmA.ready, swarmB.ready])
    const holderOf = (s: BlobSwarm) => s.peers().find((p) => p.id === holder.node.peerId.toString())
    const fromA = holderOf(swarmA)
    const fromB = holderOf(swarmB)
    assert.ok(fromA !== undefined && fromB !== undefined, 'both requesters are in session with the holder')
    assert.ok(fromA.has(0) && fromB.has(0))

    const signal = AbortSignal.timeout(30_000)
    const first = swarmA.request(fromA, 0, signal)
    // The holder has taken A's request when its read of the piece starts.
    for (let i = 0; i < 200 && blob.reads === 0; i++) await new Promise((r) => setTimeout(r, 25))
    assert.equal(blob.reads, 1, "the holder did not start serving A's request")
    const before = Date.now()
    await assert.rejects(
      swarmB.request(fromB, 0, signal),
      (err: unknown) => isShoalError(err, 'TOOMANYREQUESTS') && err.detail === 'sending',
    )
    assert.ok(fromB.deferredUntil(0) > before, 'the piece is deferred at the holder')
    assert.equal(fromB.busyUntil, 0, 'other pieces may still be asked of the holder')
    assert.ok(fromB.has(0), 'the holder keeps its bit')
    assert.equal(holder.exchange.stats.requestsDeferred, 1)

    // Another piece is taken from B (it waits for the slot).
    const other = swarmB.request(fromB, 1, signal)

    go()
    assert.ok(Buffer.from(await first).equals(data.subarray(0, PIECE)))
    // Sent is not yet received (on a slow link it sits in socket buffers): until A says Have, the
    // piece still counts as on its way.
    await assert.rejects(
      swarmB.request(fromB, 0, signal),
      (err: unknown) => isShoalError(err, 'TOOMANYREQUESTS') && err.detail === 'sending',
    )
    assert.equal(holder.exchange.stats.requestsDeferred, 2)
    // A's Have frees the slot: B's other piece goes, and once B has announced it, the slot is free.
    swarmA.announceHave(0, createHash('sha256').update(data.subarray(0, PIECE)).digest())
    assert.ok(Buffer.from(await other).equals(data.subarray(PIECE)))
    swarmB.announceHave(1, createHash('sha256').update(data.subarray(PIECE)).digest())
    // With a slot to spare, B may have the piece from the holder too.
    let got: Uint8Array | undefined
    for (let i = 0; i < 100 && got === undefined; i++) {
      got = await swarmB.request(fromB, 0, signal).catch(() => undefined)
      if (got === undefined) await new Promise((r) => setTimeout(r, 100))
    }
    assert.ok(got !== undefined && Buffer.from(got).equals(data.subarray(0, PIECE)))
    assert.equal(holder.exchange.stats.piecesServed, 3)
  })
})
