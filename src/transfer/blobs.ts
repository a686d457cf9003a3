import { createHash } from 'node:crypto'
import type { FileHandle } from 'node:fs/promises'
import { open } from 'node:fs/promises'
import { MAX_BLOB_BYTES, READ_CHUNK_BYTES } from '../constants.js'
import { isShoalError, ShoalError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Digest } from '../oci/digest.js'
import type { OriginClient, Upstream } from '../origin/client.js'
import { originError } from '../origin/errors.js'
import { type BlobStore, pieceSizeFor } from '../store/store.js'
import type { RangeReader } from '../util/file-io.js'
import { RateLimiter, Semaphore, throttle } from '../util/limits.js'
import type { BlobSwarm, LocalBlob } from './contracts.js'
import { OriginGate } from './origin-gate.js'
import { type ByteOrigin, type OriginFetcher, Transfer, type TransferInit } from './transfer.js'

export type BlobSource = 'cache' | 'origin' | 'join'

export interface BlobRequest {
  upstream: Upstream
  /** Repository name as the upstream knows it. */
  name: string
  digest: Digest
  /** Forwarded to the origin instead of the daemon's credentials (private repositories). */
  clientAuthorization?: string | undefined
  signal: AbortSignal
}

/** A blob being served: from the store or from a transfer in flight. Release it when done. */
export interface BlobHandle {
  readonly size: number
  readonly source: BlobSource
  /** For a complete blob: its file, so the proxy can send it without a stream in between. */
  readonly path?: string
  /** For a transfer in flight: its bytes read into the caller's buffers as they land. */
  readonly reader?: (signal: AbortSignal) => RangeReader
  release(): void
}

/** The swarm as the blob service sees it (src/swarm implements it). */
export interface SwarmAccess {
  /** Peers interested in `digest`, for a transfer of it. */
  join(digest: Digest, size: number, local: LocalBlob): BlobSwarm
  /** The blob's size from a peer that has it, when the origin cannot tell. */
  findSize(digest: Digest, signal: AbortSignal): Promise<number | undefined>
}

export interface BlobServiceInit {
  /** Download from origins, bytes/s (all transfers together). */
  originRate?: number | undefined
  /** Blob requests to origins in flight at once (all transfers together). */
  maxOriginRequests?: number | undefined
  /** How long a transfer with no client left keeps going before it is cancelled. */
  idleGraceMs?: number
  transfer?: Partial<Omit<TransferInit, 'digest' | 'size' | 'mediaType'>>
}

export interface BlobServiceComponents {
  store: BlobStore
  origin: OriginClient
  logger: Logger
  swarm?: SwarmAccess | undefined
  onBytes?: (source: ByteOrigin | 'cache', bytes: number) => void
  /** A blob was verified and stored (garbage collection may be due). */
  onStored?: (digest: Digest, size: number) => void
}

/** A complete blob peers fetch from is looked up in the store again after this long (see `local`). */
const STORED_RECHECK_MS = 2_000

/** One transfer per digest: concurrent requests for an uncached blob share one download. */
export class BlobService {
  private readonly store: BlobStore
  private readonly origin: OriginClient
  private readonly log: Logger
  private readonly transfers = new Map<string, Transfer>()
  private readonly starting = new Map<string, Promise<Transfer | undefined>>()
  private readonly idleGraceMs: number
  private readonly init: BlobServiceInit
  private swarm: SwarmAccess | undefined
  private readonly originLimiter: RateLimiter | undefined
  private readonly originSlots: Semaphore | undefined
  /** The origin fetches of all transfers that download with peers (see OriginGate). */
  private readonly originGate = new OriginGate()
  private readonly onBytes: (source: ByteOrigin | 'cache', bytes: number) => void
  private readonly onStored: (digest: Digest, size: number) => void
  /** Blobs being looked up for a client or sent to one now, by hex: never garbage-collected meanwhile. */
  private readonly pins = new Map<string, number>()
  /** Complete blobs peers are fetching from: their piece table and an open file, reused. */
  private readonly stored = new Map<string, StoredBlob>()

  constructor(init: BlobServiceInit, components: BlobServiceComponents) {
    this.init = init
    this.store = components.store
    this.origin = components.origin
    this.swarm = components.swarm
    this.log = components.logger.child({ component: 'blobs' })
    this.idleGraceMs = init.idleGraceMs ?? 2_000
    this.originLimiter = init.originRate === undefined ? undefined : new RateLimiter(init.originRate)
    this.originSlots = init.maxOriginRequests === undefined ? undefined : new Semaphore(init.maxOriginRequests)
    this.onBytes = components.onBytes ?? (() => {})
    this.onStored = components.onStored ?? (() => {})
  }

  /** Being downloaded or sent to a client right now. */
  inUse(hex: string): boolean {
    return this.transfers.has(hex) || this.starting.has(hex) || (this.pins.get(hex) ?? 0) > 0
  }

  /** The swarm starts after the blob service (it serves pieces from it). */
  setSwarm(swarm: SwarmAccess | undefined): void {
    this.swarm = swarm
  }

  get activeTransfers(): number {
    return this.transfers.size
  }

  /** What this node can serve of a blob: a running transfer's pieces or a complete blob. */
  async local(digest: Digest): Promise<LocalBlob | undefined> {
    const t = this.transfers.get(digest.hex)
    // A complete transfer stays until its blob is in the store: it serves pieces meanwhile.
    if (t !== undefined && t.status !== 'failed') return t
    // Asked for every piece a peer requests: the store (a LevelDB read and a stat of the file) is
    // asked again only after a while, not per piece. A blob removed meanwhile is still read
    // through the open file, or its read fails and the request is refused.
    const now = Date.now()
    const known = this.stored.get(digest.hex)
    if (known !== undefined && now - known.checkedAt < STORED_RECHECK_MS) return known
    const info = await this.store.stat(digest)
    if (info === undefined || info.mediaType !== undefined) {
      this.stored.delete(digest.hex)
      return undefined
    }
    let stored = this.stored.get(digest.hex)
    if (stored === undefined || stored.size !== info.size) {
      stored = new StoredBlob(digest, info.size, this.store)
      this.stored.set(digest.hex, stored)
      // A few dozen blobs are served to peers at once at most; the oldest entry goes first.
      if (this.stored.size > 64) this.stored.delete(this.stored.keys().next().value as string)
    }
    stored.checkedAt = now
    return stored
  }

  /** Size of a blob without fetching it: the store, a transfer in flight, or a HEAD upstream. */
  async head(req: BlobRequest): Promise<{ size: number; source: BlobSource }> {
    const info = await this.store.stat(req.digest)
    if (info !== undefined) {
      await this.ensureLinked(req)
      return { size: info.size, source: 'cache' }
    }
    const t = this.transfers.get(req.digest.hex)
    if (t !== undefined && t.status !== 'failed') {
      await this.ensureLinked(req)
      return { size: t.size, source: 'join' }
    }
    return { size: await this.sizeFromOrigin(req), source: 'origin' }
  }

  /**
   * A blob held here is served through a repository only once the origin said it belongs there:
   * a client with rights to one repository must not read another's layers by digest.
   */
  private async ensureLinked(req: BlobRequest): Promise<void> {
    if (await this.store.hasLink(linkKey(req))) return
    await this.sizeFromOrigin(req)
  }

  private async sizeFromOrigin(req: BlobRequest): Promise<number> {
    const res = await this.origin.request(req.upstream, {
      method: 'HEAD',
      path: `/v2/${req.name}/blobs/${req.digest.value}`,
      scope: `repository:${req.name}:pull`,
      clientAuthorization: req.clientAuthorization,
      signal: req.signal,
    })
    if (res.status !== 200) throw await originError(res, 'BLOB_UNKNOWN', `blob ${req.digest.value}`)
    await res.body.dump().catch(() => {})
    const size = Number(res.headers['content-length'])
    if (!Number.isSafeInteger(size) || size < 0 || size > MAX_BLOB_BYTES) {
      throw new ShoalError('UPSTREAM_ERROR', `origin gave no usable size for ${req.digest.value}`, { status: 502 })
    }
    await this.store.link(linkKey(req))
    return size
  }

  async open(req: BlobRequest): Promise<BlobHandle> {
    // Pinned from before the lookup until a handle holds its own pin: garbage collection leaves
    // a blob alone while this runs (a link check may ask the origin), and one whose deletion had
    // begun it writes back (GarbageCollector asks again before it removes the file).
    this.pin(req.digest.hex)
    try {
      return await this.openPinned(req)
    } finally {
      this.unpin(req.digest.hex)
    }
  }

  private async openPinned(req: BlobRequest): Promise<BlobHandle> {
    const info = await this.store.stat(req.digest)
    if (info !== undefined) {
      await this.ensureLinked(req)
      this.store.touch(req.digest, info).catch((err: unknown) => this.log.warn({ err: String(err) }, 'touch failed'))
      return this.fileHandle(req.digest, info.size)
    }
    let transfer = this.transfers.get(req.digest.hex)
    let source: BlobSource = 'join'
    if (transfer !== undefined && transfer.status !== 'failed') await this.ensureLinked(req)
    if (transfer === undefined || transfer.status === 'failed') {
      let pending = this.starting.get(req.digest.hex)
      if (pending === undefined) {
        source = 'origin'
        pending = this.startTransfer(req)
        this.starting.set(req.digest.hex, pending)
        pending.finally(() => this.starting.delete(req.digest.hex)).catch(() => {})
      }
      const started = await pending
      if (started === undefined) {
        // Stored by a transfer that ended while the first look at the store was under way.
        const done = await this.store.stat(req.digest)
        if (done === undefined) {
          throw new ShoalError('BLOB_UNKNOWN', `blob ${req.digest.value} left the store as it was stored`, {
            status: 404,
          })
        }
        await this.ensureLinked(req)
        return this.fileHandle(req.digest, done.size)
      }
      transfer = started
      if (source === 'join') await this.ensureLinked(req)
    } else if (transfer.status === 'complete') {
      // Verified and being stored: wait for the store (bounded by the commit) and serve the file.
      await transfer.done.catch(() => {})
      const done = await this.store.stat(req.digest)
      if (done !== undefined) return this.fileHandle(req.digest, done.size)
    }
    transfer.acquire()
    const t = transfer
    let released = false
    return {
      size: t.size,
      source,
      reader: (signal) => t.reader(signal),
      release: () => {
        if (released) return
        released = true
        t.release(this.idleGraceMs)
      },
    }
  }

  /**
   * Brings a blob into the cache with no client reading it (preheat, config prefetch): a held blob
   * needs nothing more; a transfer, started here or already running, is followed to its end
   * (with no reader left it would be cancelled).
   */
  async fetch(req: BlobRequest): Promise<{ size: number; source: BlobSource }> {
    const handle = await this.open(req)
    try {
      if (handle.reader !== undefined) await drain(handle.reader(req.signal), handle.size)
      return { size: handle.size, source: handle.source }
    } finally {
      handle.release()
    }
  }

  /**
   * Starts the one transfer of a blob, or returns undefined when the blob is in the store by now:
   * `open` looked at the store and at the transfers at different moments, and a transfer may have
   * stored the blob and left in between (seen as the origin sending a blob twice to three
   * clients). This look comes after `starting` holds the digest, so nothing can slip by it.
   */
  private async startTransfer(req: BlobRequest): Promise<Transfer | undefined> {
    if ((await this.store.stat(req.digest)) !== undefined) return undefined
    let size: number
    try {
      size = await this.sizeFromOrigin(req)
    } catch (err) {
      const swarm = this.swarm
      if (!isShoalError(err, 'UPSTREAM_UNREACHABLE') || swarm === undefined) throw err
      const fromPeers = await swarm.findSize(req.digest, req.signal)
      if (fromPeers === undefined) throw err
      this.log.info({ digest: req.digest.value }, 'origin unreachable; fetching from peers only')
      size = fromPeers
    }
    const transfer = new Transfer(
      { ...this.init.transfer, digest: req.digest, size },
      {
        store: this.store,
        logger: this.log,
        origin: this.originFetcher(req),
        onBytes: this.onBytes,
        swarm: undefined,
        originGate: this.originGate,
      },
    )
    if (this.swarm !== undefined) transfer.attachSwarm(this.swarm.join(req.digest, size, transfer))
    this.transfers.set(req.digest.hex, transfer)
    transfer.done
      .then(() => this.onStored(req.digest, size))
      .finally(() => {
        if (this.transfers.get(req.digest.hex) === transfer) this.transfers.delete(req.digest.hex)
      })
      .catch(() => {})
    await transfer.start()
    return transfer
  }

  /** The origin as a source of byte ranges: GET with Range, tolerating a registry that ignores it. */
  private originFetcher(req: BlobRequest): OriginFetcher {
    return {
      name: `origin ${req.upstream.url.origin}`,
      fetch: async (start, end, signal) => {
        const slots = this.originSlots
        await slots?.acquire()
        try {
          const body = await this.rangeFromOrigin(req, start, end, signal)
          return limited(throttle(body, this.originLimiter, signal), slots)
        } catch (err) {
          slots?.release()
          throw err
        }
      },
    }
  }

  private async rangeFromOrigin(
    req: BlobRequest,
    start: number,
    end: number,
    signal: AbortSignal,
  ): Promise<AsyncIterable<Uint8Array>> {
    const { upstream, name, digest, clientAuthorization } = req
    const res = await this.origin.request(upstream, {
      method: 'GET',
      path: `/v2/${name}/blobs/${digest.value}`,
      scope: `repository:${name}:pull`,
      headers: { range: `bytes=${start}-${end - 1}` },
      clientAuthorization,
      signal,
    })
    if (res.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers['content-range'] ?? '')
      if (m === null || Number(m[1]) !== start) {
        await res.body.dump().catch(() => {})
        throw new ShoalError('UPSTREAM_ERROR', `origin sent a bad Content-Range for ${digest.value}`, {
          status: 502,
        })
      }
      return res.body
    }
    if (res.status === 200) return slice(res.body, start, end)
    throw await originError(res, 'BLOB_UNKNOWN', `blob ${digest.value}`)
  }

  private pin(hex: string): void {
    this.pins.set(hex, (this.pins.get(hex) ?? 0) + 1)
  }

  private unpin(hex: string): void {
    const n = (this.pins.get(hex) ?? 1) - 1
    if (n <= 0) this.pins.delete(hex)
    else this.pins.set(hex, n)
  }

  private fileHandle(digest: Digest, size: number): BlobHandle {
    const path = this.store.blobPath(digest)
    this.pin(digest.hex)
    let released = false
    return {
      size,
      source: 'cache',
      path,
      release: () => {
        if (released) return
        released = true
        this.unpin(digest.hex)
      },
    }
  }

  /**
   * Bytes [start, end) straight from the origin to one client, stored nowhere: the way out when
   * the disk is full. The client checks the digest itself, as every registry client does.
   */
  async passthrough(req: BlobRequest, start: number, end: number): Promise<AsyncIterable<Uint8Array>> {
    this.log.warn({ digest: req.digest.value }, 'disk full: passing the blob through from the origin')
    const body = await this.rangeFromOrigin(req, start, end, req.signal)
    const onBytes = this.onBytes
    return (async function* () {
      for await (const chunk of body) {
        onBytes('origin', chunk.byteLength)
        yield chunk
      }
    })()
  }

  /** Counts cache bytes sent by other means than `stream` (the proxy's sendFile). */
  countCacheBytes(bytes: number): void {
    this.onBytes('cache', bytes)
  }

  /**
   * Stops every transfer (shutdown) and waits, bounded, for those already verified to reach the
   * store; pieces on disk stay for a resume.
   */
  async stopAll(waitMs: number): Promise<void> {
    const all = [...this.transfers.values()]
    for (const t of all) t.abort(new ShoalError('ABORTED', 'shutting down'))
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      Promise.allSettled(all.map((t) => t.done)),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, waitMs)
      }),
    ])
    clearTimeout(timer)
  }
}

/** A complete, verified blob in the store, as the swarm serves it. */
class StoredBlob implements LocalBlob {
  readonly pieceSize: number
  readonly pieceCount: number
  readonly downloading = false
  /** When the store last said the blob is there (see `BlobService.local`). */
  checkedAt = 0
  private table: Uint8Array[] | undefined
  private readonly bits: Uint8Array<ArrayBuffer>

  constructor(
    private readonly digest: Digest,
    readonly size: number,
    private readonly store: BlobStore,
  ) {
    this.pieceSize = pieceSizeFor(size)
    this.pieceCount = Math.max(1, Math.ceil(size / this.pieceSize))
    this.bits = new Uint8Array(Math.ceil(this.pieceCount / 8))
    for (let i = 0; i < this.pieceCount; i++) this.bits[i >> 3] = (this.bits[i >> 3] ?? 0) | (1 << (i & 7))
  }

  has(index: number): boolean {
    return index >= 0 && index < this.pieceCount
  }

  bitfield(): Uint8Array<ArrayBuffer> {
    return this.bits
  }

  hashOf(index: number): Uint8Array | undefined {
    return this.table?.[index]
  }

  /** From the store, or computed once by reading the blob (blobs stored before tables existed). */
  pieceTable(): Promise<Uint8Array[] | undefined> {
    // One computation however many sessions ask at once.
    this.tableLoad ??= this.loadPieceTable().finally(() => {
      this.tableLoad = undefined
    })
    return this.tableLoad
  }

  private tableLoad: Promise<Uint8Array[] | undefined> | undefined

  private async loadPieceTable(): Promise<Uint8Array[] | undefined> {
    if (this.table !== undefined) return this.table
    const hex = await this.store.pieceTable(this.digest)
    if (hex !== undefined && hex.length === this.pieceCount && hex.every((h) => h.length === 64)) {
      this.table = hex.map((h) => Buffer.from(h, 'hex'))
      return this.table
    }
    const table: Uint8Array[] = []
    for (let i = 0; i < this.pieceCount; i++) {
      table.push(
        createHash('sha256')
          .update(await this.readPiece(i))
          .digest(),
      )
    }
    await this.store.setPieceTable(
      this.digest,
      table.map((h) => Buffer.from(h).toString('hex')),
    )
    this.table = table
    return table
  }

  private file: Promise<FileHandle> | undefined
  private idle: NodeJS.Timeout | undefined

  /** Reads share one file handle, closed after a few idle seconds. */
  async readPiece(index: number, into?: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
    const start = index * this.pieceSize
    const len = Math.min(this.size, start + this.pieceSize) - start
    const buf = into?.subarray(0, len) ?? Buffer.allocUnsafe(len)
    if (this.idle !== undefined) clearTimeout(this.idle)
    this.file ??= open(this.store.blobPath(this.digest), 'r')
    const file = this.file
    try {
      const fh = await file
      let off = 0
      while (off < len) {
        const { bytesRead } = await fh.read(buf, off, len - off, start + off)
        if (bytesRead === 0) throw new ShoalError('BLOB_UNKNOWN', `blob ${this.digest.value} is shorter than recorded`)
        off += bytesRead
      }
    } catch (err) {
      if (this.file === file) this.file = undefined
      file.then((fh) => fh.close()).catch(() => {})
      throw err
    } finally {
      this.idle = setTimeout(() => {
        if (this.file === file) this.file = undefined
        file.then((fh) => fh.close()).catch(() => {})
      }, 5_000)
      this.idle.unref()
    }
    return buf
  }
}

/** Holds an origin slot until the body is consumed or abandoned. */
async function* limited(body: AsyncIterable<Uint8Array>, slots: Semaphore | undefined): AsyncGenerator<Uint8Array> {
  try {
    yield* body
  } finally {
    slots?.release()
  }
}

function linkKey(req: BlobRequest): string {
  return `${req.upstream.host}/${req.name}@${req.digest.hex}`
}

/** Bytes [start, end) of a body that starts at 0 (an origin that ignored Range). */
async function* slice(body: AsyncIterable<Uint8Array>, start: number, end: number): AsyncGenerator<Uint8Array> {
  let pos = 0
  for await (const chunk of body) {
    const cStart = pos
    pos += chunk.byteLength
    if (pos <= start) continue
    const from = Math.max(0, start - cStart)
    const to = Math.min(chunk.byteLength, end - cStart)
    if (to > from) yield chunk.subarray(from, to)
    if (pos >= end) return
  }
}

/** Reads [0, size) and throws the bytes away, through one buffer. */
async function drain(reader: RangeReader, size: number): Promise<void> {
  const buf = Buffer.allocUnsafe(Math.min(size, READ_CHUNK_BYTES))
  try {
    for (let pos = 0; pos < size; ) pos += await reader.read(buf.subarray(0, Math.min(buf.length, size - pos)), pos)
  } finally {
    await reader.close()
  }
}
