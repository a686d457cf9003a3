/**
 * A holder whose upload is busy does not send one piece to two peers at once (super-seeding): real
 * libp2p nodes on loopback, one holding a blob (one sending slot) whose first piece read is held
 * back, two requesters asking for that piece at the same time. One gets it; the other is told
 * "sending to another peer", keeps the holder's bit, and gets the piece when it asks again after
 * the first recipient announced it.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, describe, it } from 'node:test'
import { isShoalError } from '../../src/errors.js'
import type { BlobSwarm } from '../../src/transfer/contracts.js'
import { ExchangeGroup, FullBlob, PIECE, randomBlob } from '../helpers/exchange.js'

describe('swarm: a piece on its way to one peer is not sent to another at the same time', { timeout: 60_000 }, () => {
  const group = new ExchangeGroup()

  after(async () => {
    await group.stop()
  })

  it('the second requester is deferred, keeps the holder, and gets the piece afterwards', async () => {
    const { data, digest } = randomBlob(2)
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
    // The messages are counted where they are written and read (shoal_swarm_messages_total).
    assert.ok(holder.exchange.stats.messagesReceived.request >= 2, 'the holder read both requests')
    assert.ok(holder.exchange.stats.messagesSent.reject >= 1, 'the holder wrote the deferral')
    assert.ok(b.exchange.stats.messagesReceived.reject >= 1, 'B read the deferral')
    assert.ok(a.exchange.stats.messagesSent.request >= 1 && b.exchange.stats.messagesSent.request >= 1)
    assert.ok(holder.exchange.stats.messagesReceived.hello >= 2 && a.exchange.stats.messagesSent.hello >= 1)

    // Another piece is taken from B (it waits for the slot).
    const other = swarmB.request(fromB, 1, signal)

    go()
    assert.ok(Buffer.from(await first).equals(data.subarray(0, PIECE)))
    assert.ok(holder.exchange.stats.messagesSent.piece >= 1, 'the holder counted the piece it wrote')
    assert.ok(a.exchange.stats.messagesReceived.piece >= 1, 'A counted the piece it read')
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

  it('a queued request whose piece another peer got meanwhile is sent there when its slot comes, if others wait', async () => {
    const { data, digest } = randomBlob(4)
    const piece = (i: number) => data.subarray(i * PIECE, (i + 1) * PIECE)
    const hash = (i: number) => createHash('sha256').update(piece(i)).digest()
    let go: () => void = () => {}
    const firstReads = new Promise<void>((resolve) => {
      go = resolve
    })
    // The holder's first two reads wait for `go`: both of its sending slots stay taken.
    const blob = new FullBlob(data, async (read) => {
      if (read <= 1) await firstReads
    })
    const holder = await group.start('holder2', async (d) => (d.value === digest.value ? blob : undefined), {
      minInFlight: 2,
      maxInFlight: 2,
    })
    const addr = holder.node.libp2p.getMultiaddrs()[0]
    assert.ok(addr !== undefined)
    const peers: BlobSwarm[] = []
    for (const name of ['a2', 'b2', 'c2', 'd2']) {
      const n = await group.start(name, async () => undefined)
      await n.node.libp2p.dial(addr)
      peers.push(group.join(n, digest, data.length, 4))
    }
    const [swarmA, swarmB, swarmC, swarmD] = peers
    assert.ok(swarmA && swarmB && swarmC && swarmD)
    await Promise.all(peers.map((s) => s.ready))
    const holderOf = (s: BlobSwarm) => s.peers().find((p) => p.id === holder.node.peerId.toString())
    const [fromA, fromB, fromC, fromD] = peers.map(holderOf)
    assert.ok(fromA && fromB && fromC && fromD, 'every requester is in session with the holder')

    const signal = AbortSignal.timeout(30_000)
    // A and D take both slots; B's and C's requests (pieces 1 and 2) queue behind them. When B's
    // came, nobody else had piece 1.
    const first = swarmA.request(fromA, 0, signal)
    const fourth = swarmD.request(fromD, 3, signal)
    for (let i = 0; i < 200 && blob.reads < 2; i++) await new Promise((r) => setTimeout(r, 25))
    assert.equal(blob.reads, 2, 'the holder did not start serving A and D')
    const b = swarmB.request(fromB, 1, signal).then(
      () => undefined,
      (err: unknown) => err,
    )
    // C's request after B's is queued (they come on different connections).
    for (let i = 0; i < 200 && holder.exchange.queued < 3; i++) await new Promise((r) => setTimeout(r, 10))
    assert.equal(holder.exchange.queued, 3)
    const c = swarmC.request(fromC, 2, signal)
    await new Promise((r) => setTimeout(r, 300))
    assert.equal(holder.exchange.stats.requestsDeferred + holder.exchange.stats.requestsRedirected, 0)
    // Meanwhile A gets piece 1 from elsewhere and says so.
    swarmA.announceHave(1, hash(1))
    await new Promise((r) => setTimeout(r, 300))
    go()
    assert.ok(Buffer.from(await first).equals(piece(0)))
    assert.ok(Buffer.from(await fourth).equals(piece(3)))
    // A's Have frees a slot while C still waits: B is sent to A, and the slot goes to C's piece.
    swarmA.announceHave(0, hash(0))
    const err = await b
    assert.ok(isShoalError(err, 'TOOMANYREQUESTS') && err.detail === 'sending', `B was told: ${String(err)}`)
    assert.ok(fromB.has(1), 'the holder keeps its bit')
    swarmD.announceHave(3, hash(3))
    assert.ok(Buffer.from(await c).equals(piece(2)))
    assert.equal(holder.exchange.stats.requestsRedirected, 1)
    assert.equal(holder.exchange.stats.piecesServed, 3)
  })
})
