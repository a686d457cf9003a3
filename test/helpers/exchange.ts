/**
 * In-process piece exchanges over real libp2p nodes on loopback, for swarm tests that need to
 * reach the protocol directly (no daemon, no origin): a blob held whole, a blob wanted, and a
 * group of nodes stopped together.
 */
import { createHash, randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { PIECE_SIZE_MIN } from '../../src/constants.js'
import { silentLogger } from '../../src/log.js'
import { type Digest, parseDigest } from '../../src/oci/digest.js'
import { type ExchangeInit, PieceExchange } from '../../src/swarm/exchange.js'
import { SwarmNode } from '../../src/swarm/node.js'
import { Bitfield } from '../../src/transfer/bitfield.js'
import type { BlobSwarm, LocalBlob } from '../../src/transfer/contracts.js'
import { removeDir, tempDir } from './swarm.js'

export const PIECE = PIECE_SIZE_MIN

/** Random bytes of `pieces` pieces and their digest. */
export function randomBlob(pieces: number): { data: Buffer; digest: Digest } {
  const data = randomBytes(pieces * PIECE)
  return { data, digest: parseDigest(`sha256:${createHash('sha256').update(data).digest('hex')}`) }
}

/** Every piece of `data`, verified; `beforeRead` may hold a read back. */
export class FullBlob implements LocalBlob {
  readonly pieceSize = PIECE
  readonly pieceCount: number
  readonly downloading = false
  reads = 0

  constructor(
    private readonly data: Buffer,
    private readonly beforeRead: (read: number) => Promise<void> = async () => {},
    readonly size = data.length,
  ) {
    this.pieceCount = Math.ceil(data.length / PIECE)
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

  /** The buffers the exchange gave to read pieces into, in order. */
  readonly intoBuffers: ArrayBufferLike[] = []

  async readPiece(index: number, into?: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
    await this.beforeRead(this.reads++)
    const piece = this.piece(index)
    if (into === undefined) return new Uint8Array(piece)
    this.intoBuffers.push(into.buffer)
    const out = into.subarray(0, piece.length)
    out.set(piece)
    return out
  }

  piece(index: number): Buffer {
    return this.data.subarray(index * PIECE, (index + 1) * PIECE)
  }
}

/** A blob being downloaded that has nothing yet. */
export class Wanting implements LocalBlob {
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

export interface ExchangeNode {
  node: SwarmNode
  exchange: PieceExchange
}

/** Nodes with a piece exchange each, and the swarms they joined; `stop` ends them all. */
export class ExchangeGroup {
  private root: string | undefined
  private readonly members: ExchangeNode[] = []
  private readonly swarms: BlobSwarm[] = []

  async start(
    name: string,
    local: (d: Digest) => Promise<LocalBlob | undefined>,
    init: ExchangeInit = {},
    /** false: the exchange is left for the caller to start (a daemon between its two starts). */
    startExchange = true,
  ): Promise<ExchangeNode> {
    this.root ??= await tempDir('shsw-exchange-')
    const node = new SwarmNode(
      {
        listen: ['/ip4/127.0.0.1/tcp/0'],
        bootstrap: [],
        mdns: false,
        encryption: ['noise'],
        identityPath: join(this.root, `${name}.key`),
        maxConnections: 50,
        bootstrapIntervalMs: 60_000,
      },
      { logger: silentLogger() },
    )
    await node.start()
    const exchange = new PieceExchange(init, { node, logger: silentLogger(), local })
    this.members.push({ node, exchange })
    if (startExchange) await exchange.start()
    return { node, exchange }
  }

  /**
   * A holder of a random blob of `pieces` pieces (held whole) and a puller that has nothing,
   * connected to each other (both sides see the connection).
   */
  async holderAndPuller(pieces: number, holderName = 'holder') {
    const { data, digest } = randomBlob(pieces)
    const blob = new FullBlob(data)
    const holder = await this.start(holderName, async (d) => (d.value === digest.value ? blob : undefined))
    const puller = await this.start('puller', async () => undefined)
    const addr = holder.node.libp2p.getMultiaddrs()[0]
    if (addr === undefined) throw new Error('the holder listens nowhere')
    await puller.node.libp2p.dial(addr)
    for (let i = 0; i < 500 && !holder.node.isConnected(puller.node.peerId); i++) {
      await new Promise((r) => setTimeout(r, 10))
    }
    return { data, digest, blob, holder, puller }
  }

  /** `from` dials `to` (its first listening address). */
  async connect(from: ExchangeNode, to: ExchangeNode): Promise<void> {
    const addr = to.node.libp2p.getMultiaddrs()[0]
    if (addr === undefined) throw new Error('the node listens nowhere')
    await from.node.libp2p.dial(addr)
  }

  /** `from` joins the blob as a downloader (closed by `stop`). */
  join(from: ExchangeNode, digest: Digest, size: number, pieces: number): BlobSwarm {
    const swarm = from.exchange.join(digest, size, new Wanting(size, pieces))
    this.swarms.push(swarm)
    return swarm
  }

  async stop(): Promise<void> {
    for (const s of this.swarms) s.close()
    for (const m of this.members) await m.exchange.stop().catch(() => {})
    for (const m of this.members) await m.node.stop().catch(() => {})
    if (this.root !== undefined) await removeDir(this.root)
  }
}
