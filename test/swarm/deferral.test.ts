/**
 * A holder does not send one piece to two peers at once (super-seeding): real libp2p nodes on
 * loopback, one holding a blob whose first piece read is held back, two requesters asking for that
 * piece at the same time. One gets it; the other is told "sending to another peer", keeps the
 * holder's bit, and gets the piece when it asks again after the first recipient announced it.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { PIECE_SIZE_SMALL } from '../../src/constants.js'
import { isShoalError } from '../../src/errors.js'
import { silentLogger } from '../../src/log.js'
import { type Digest, parseDigest } from '../../src/oci/digest.js'
import { PieceExchange } from '../../src/swarm/exchange.js'
import { SwarmNode } from '../../src/swarm/node.js'
import { Bitfield } from '../../src/transfer/bitfield.js'
import type { BlobSwarm, LocalBlob } from '../../src/transfer/contracts.js'
import { removeDir, tempDir } from '../helpers/swarm.js'

const PIECE = PIECE_SIZE_SMALL

class HeldBlob implements LocalBlob {
  readonly pieceSize = PIECE
  readonly pieceCount: number
  readonly downloading = false
  reads = 0
  private release: (() => void) | undefined
  /** The first read of a piece waits for this. */
  readonly firstRead: Promise<void>

  constructor(
    private readonly data: Buffer,
    readonly size = data.length,
  ) {
    this.pieceCount = Math.ceil(data.length / PIECE)
    this.firstRead = new Promise((resolve) => {
      this.release = resolve
    })
  }

  go(): void {
    this.release?.()
  }

  has(): boolean {
    return true
  }

  bitfield(): Uint8Array<ArrayBuffer> {
    const b = new Bitfield(this.pieceCount)
    for (let i = 0; i < this.pieceCount; i++) b.set(i)
    return new Uint8Array(b.bytes)
  }

  hashOf(index: number): Uint8Array {
    return createHash('sha256').update(this.piece(index)).digest()
  }

  async pieceTable(): Promise<Uint8Array[]> {
    return Array.from({ length: this.pieceCount }, (_, i) => this.hashOf(i))
  }

  async readPiece(index: number): Promise<Uint8Array<ArrayBuffer>> {
    if (this.reads++ === 0) await this.firstRead
    return new Uint8Array(this.piece(index))
  }

  private piece(index: number): Buffer {
    return this.data.subarray(index * PIECE, (index + 1) * PIECE)
  }
}

class Wanting implements LocalBlob {
  readonly pieceSize = PIECE
  readonly downloading = true
  constructor(
    readonly size: number,
    readonly pieceCount: number,
  ) {}
  has(): boolean {
    return false
  }
  bitfield(): Uint8Array<ArrayBuffer> {
    return new Uint8Array(new Bitfield(this.pieceCount).bytes)
  }
  hashOf(): undefined {
    return undefined
  }
  async pieceTable(): Promise<undefined> {
    return undefined
  }
  async readPiece(): Promise<Uint8Array<ArrayBuffer>> {
    throw new Error('has nothing')
  }
}

describe('swarm: a piece on its way to one peer is not sent to another at the same time', { timeout: 60_000 }, () => {
  let root: string
  const nodes: SwarmNode[] = []
  const exchanges: PieceExchange[] = []
  const swarms: BlobSwarm[] = []

  before(async () => {
    root = await tempDir('shsw-defer-')
  })

  after(async () => {
    for (const s of swarms) s.close()
    for (const e of exchanges) await e.stop().catch(() => {})
    for (const n of nodes) await n.stop().catch(() => {})
    await removeDir(root)
  })

  async function start(name: string, local: (d: Digest) => Promise<LocalBlob | undefined>) {
    const node = new SwarmNode(
      {
        listen: ['/ip4/127.0.0.1/tcp/0'],
        bootstrap: [],
        mdns: false,
        encryption: ['noise'],
        identityPath: join(root, `${name}.key`),
        maxConnections: 50,
        bootstrapIntervalMs: 60_000,
      },
      { logger: silentLogger() },
    )
    await node.start()
    nodes.push(node)
    const exchange = new PieceExchange({}, { node, logger: silentLogger(), local })
    await exchange.start()
    exchanges.push(exchange)
    return { node, exchange }
  }

  it('the second requester is deferred, keeps the holder, and gets the piece afterwards', async () => {
    const data = randomBytes(2 * PIECE)
    const digest = parseDigest(`sha256:${createHash('sha256').update(data).digest('hex')}`)
    const blob = new HeldBlob(data)
    const holder = await start('holder', async (d) => (d.value === digest.value ? blob : undefined))
    const a = await start('a', async () => undefined)
    const b = await start('b', async () => undefined)
    const addr = holder.node.libp2p.getMultiaddrs()[0]
    assert.ok(addr !== undefined)
    await a.node.libp2p.dial(addr)
    await b.node.libp2p.dial(addr)

    const swarmA = a.exchange.join(digest, data.length, new Wanting(data.length, 2))
    const swarmB = b.exchange.join(digest, data.length, new Wanting(data.length, 2))
    swarms.push(swarmA, swarmB)
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

    // Another piece is served to B at once, while A's piece is still held back.
    const other = await swarmB.request(fromB, 1, signal)
    assert.ok(Buffer.from(other).equals(data.subarray(PIECE)))

    blob.go()
    assert.ok(Buffer.from(await first).equals(data.subarray(0, PIECE)))
    // Sent is not yet received (on a slow link it sits in socket buffers): until A says Have, the
    // piece still counts as on its way.
    await assert.rejects(
      swarmB.request(fromB, 0, signal),
      (err: unknown) => isShoalError(err, 'TOOMANYREQUESTS') && err.detail === 'sending',
    )
    assert.equal(holder.exchange.stats.requestsDeferred, 2)
    swarmA.announceHave(0, createHash('sha256').update(data.subarray(0, PIECE)).digest())
    // Once A has announced it, B may have the piece from the holder too.
    let got: Uint8Array | undefined
    for (let i = 0; i < 100 && got === undefined; i++) {
      got = await swarmB.request(fromB, 0, signal).catch(() => undefined)
      if (got === undefined) await new Promise((r) => setTimeout(r, 100))
    }
    assert.ok(got !== undefined && Buffer.from(got).equals(data.subarray(0, PIECE)))
    assert.equal(holder.exchange.stats.piecesServed, 3)
  })
})
