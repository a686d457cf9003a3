import { createHash, type Hash, randomFillSync } from 'node:crypto'
import { type FileHandle, open } from 'node:fs/promises'
import { BUFFER_POOL_IDLE_MS, CHECKPOINT_BYTES, PIECE_SIZE_CLASSES } from '../constants.js'
import { abortError, ShoalError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Digest } from '../oci/digest.js'
import { type BlobStore, type PartialInfo, pieceSizeFor } from '../store/store.js'
import { BufferPool } from '../util/buffer-pool.js'
import { type RangeReader, readFully, writeAll } from '../util/file-io.js'
import { Bitfield } from './bitfield.js'
import type { BlobSwarm, LocalBlob, SwarmPeer } from './contracts.js'
import { OriginGate } from './origin-gate.js'
import { rendezvousScore } from './rendezvous.js'

/** Where bytes come from when no peer has them. */
export interface OriginFetcher {
  readonly name: string
  /** Bytes [start, end) of the blob, as they arrive. */
  fetch(start: number, end: number, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>>
}

export type TransferState = 'running' | 'complete' | 'failed'
export type ByteOrigin = 'origin' | 'peer'

export interface TransferInit {
  digest: Digest
  size: number
  mediaType?: string
  /** Origin requests in flight at once for this blob. */
  originConcurrency?: number
  /** Attempts of one piece (or run) from the origin before the transfer fails. */
  originAttempts?: number
  peerRequestsPerPeer?: number
  maxPeerRequests?: number
  /**
   * A piece request is given up when its peer has sent no piece bytes for this long: a busy
   * peer still sending (pieces queued before ours) is waited for, a silent one is not.
   */
  peerStallMs?: number
  /** The longest a piece request waits in all. */
  peerRequestTimeoutMs?: number
  /** How long a piece owned by another downloader waits for that owner's claim or Have. */
  ownerWaitMs?: number
  /**
   * After a downloader leaves (killed, gone, or done), how long a piece nobody claims waits for its
   * new rendezvous owner — one seen long ago — to claim it.
   */
  ownerChangeWaitMs?: number
  /** A claim not refreshed for this long no longer holds. */
  claimTimeoutMs?: number
  /** Between claiming a piece and fetching it, for simultaneous claims to be seen and settled. */
  claimSettleMs?: number
  /**
   * A piece taken over from another downloader's queue is fetched on that owner's go-ahead (it
   * yields the piece, see `BlobSwarm.yieldClaim`); from an owner that never says (one that predates
   * it) or whose go-ahead is late, after this long unless a Claim that the piece is being fetched
   * came meanwhile.
   */
  takeoverWaitMs?: number
  /**
   * A node takes over a piece queued at another downloader once the piece lies this many pieces
   * (an eighth of the blob, if more) before the highest piece of its own it started from the
   * origin (see `takeOverLagging`).
   */
  laggingPieces?: number
  /** The longest origin fetches wait for sessions whose Hello has not come yet. */
  helloWaitMs?: number
}

export interface TransferComponents {
  store: BlobStore
  logger: Logger
  origin: OriginFetcher
  swarm?: BlobSwarm | undefined
  /** Counts bytes obtained for this blob, by where they came from. */
  onBytes?: (source: ByteOrigin, bytes: number) => void
  /** The node's origin fetches with peers, shared by its transfers (default: one of its own). */
  originGate?: OriginGate | undefined
}

const DEFAULTS = {
  originConcurrency: 4,
  originAttempts: 4,
  peerRequestsPerPeer: 4,
  maxPeerRequests: 16,
  peerStallMs: 30_000,
  peerRequestTimeoutMs: 180_000,
  // Longer than the discovery wait (5 s): an owner still in it has not claimed anything yet.
  ownerWaitMs: 8_000,
  // A Claim can take 2.6 s to cross a busy connection (takeoverWaitMs, below). Without this wait,
  // when three of ten daemons were killed (lab P3), every survivor took the dead daemons' pieces
  // from their new owners at once — who had been seen for long — and a piece claimed by three at
  // once was fetched twice (1.10–1.13 × the image from the origin).
  ownerChangeWaitMs: 3_000,
  claimSettleMs: 200,
  // Without the owner's go-ahead, a fixed wait was not enough: with 200 ms, 3 of 54 takeovers in a
  // lab P2 fetched a piece the owner had started (Claims 250–470 ms late on busy sessions); with
  // 1 s, 3 of ~8 in a P1 (1.5–2.6 s late, behind piece data on the connection).
  takeoverWaitMs: 5_000,
  laggingPieces: 4,
  // The session-open bound (dial, Noise, Hello) of the piece exchange.
  helloWaitMs: 15_000,
  claimTimeoutMs: 30_000,
}

/** Origin answers that another attempt would not change (the origin client already retried 5xx). */
const FINAL_ORIGIN_ERRORS = new Set<string | undefined>([
  'DIGEST_INVALID',
  'SIZE_INVALID',
  'BLOB_UNKNOWN',
  'UNAUTHORIZED',
  'DENIED',
  'TOOMANYREQUESTS',
])

/** Missing pieces looked at for rarest-first choice (beyond, the order is by index anyway). */
const RAREST_WINDOW = 256

/** From the first missing piece, this many go before rarer ones once two peers hold them (requestFromPeers). */
const FRONTIER_PIECES = 8

/** Bytes of pieces the whole-blob hash reads back from the partial file at once (see advanceHash). */
const HASH_READ_AHEAD_BYTES = 4 * 1024 * 1024

/** Bytes per origin request while no peer is known (whole pieces, one at least). */
const ALONE_RUN_BYTES = 64 * 1024 * 1024

/**
 * One download of one blob into its partial file, shared by every client that wants it (single
 * flight). Pieces come from peers when any has them, else from the origin — for a piece nobody
 * has, only from the downloader that rendezvous hashing picks (the others wait for its Have).
 * Clients read the contiguous prefix behind the writers; the last byte is held back until the
 * whole blob matches its digest, so no client ever receives a complete wrong blob.
 */
export class Transfer implements LocalBlob {
  readonly digest: Digest
  readonly size: number
  readonly pieceSize: number
  readonly pieceCount: number
  private readonly init: TransferInit
  private readonly opts: typeof DEFAULTS
  private readonly store: BlobStore
  private readonly log: Logger
  private readonly originFetcher: OriginFetcher
  private swarm: BlobSwarm | undefined
  private readonly onBytes: (source: ByteOrigin, bytes: number) => void
  private readonly gate: OriginGate
  private readonly controller = new AbortController()
  private state: TransferState = 'running'
  private error: Error | undefined
  private handle: FileHandle | undefined
  private have: Bitfield
  private readonly hashes: (Buffer<ArrayBuffer> | undefined)[]
  /** Who delivered each piece: 'origin' or a peer ID (for repair and banning). */
  private readonly deliveredBy: (string | undefined)[]
  /** This node's random order among pieces equally rare (see requestFromPeers). */
  private readonly tieBreak: Uint32Array
  private readonly inflight = new Map<number, string>()
  /** How piece requests to peers ended (ok, stalled, busy, refused, closed, …), for the logs. */
  private readonly requestOutcomes: Record<string, number> = {}
  /** Piece requests to peers in flight, to be given up when their peer stalls. */
  private readonly peerRequests = new Map<number, { peer: SwarmPeer; started: number; stop: AbortController }>()
  private originInflight = 0
  private peerInflight = 0
  private readonly originFailures = new Map<number, number>()
  /** Pieces this node claimed (it fetches them from the origin), with when it last said so. */
  private readonly claimedAt = new Map<number, number>()
  /** When this node first claimed each piece (origin fetches wait `claimSettleMs` after it). */
  private readonly claimStarted = new Map<number, number>()
  /** Claimed pieces this node took over from another downloader's queue, not yet fetching. */
  private readonly takenOver = new Set<number>()
  /** Claimed pieces this node owned by the rendezvous when it claimed them (or was handed): see `handOff`. */
  private readonly ownerClaimed = new Set<number>()
  /** When each other downloader was first seen: an owner's grace to claim starts there. */
  private readonly firstSeen = new Map<string, number>()
  /** Since the last `handOff`, a downloader was seen for the first time or a piece was handed here. */
  private reviewOwners = false
  /** The downloaders of the last scheduling round, and when one of them last left. */
  private lastDownloaders = new Set<string>()
  /** The same downloaders, in the order of the round that last changed them, and as one string. */
  private roundDownloaders: string[] = []
  private lastDownloadersKey = ''
  private downloaderLeftAt = 0
  /**
   * Rendezvous results, each a SHA-256 of its own: every piece's owner among the last round's
   * downloaders (cleared when they change), and this node's own score per piece. A round asked for
   * them again for every piece it looked at.
   */
  private owners: (string | undefined)[] = []
  private readonly selfScores: (bigint | undefined)[] = []
  private lastOriginProgress = 0
  /** The highest piece of its own this node started fetching from the origin beside peers (-1: none yet). */
  private originFront = -1
  private readonly startedAt = Date.now()
  /** Whole-blob hash over pieces [0, hashedPieces). */
  private hasher: Hash = createHash('sha256')
  private hashedPieces = 0
  private hashing: Promise<void> = Promise.resolve()
  /** Buffers the whole-blob hash reads pieces back into, free for the next reads. */
  private hashScratch: Buffer<ArrayBuffer>[] = []
  /** When the last piece was written and how far the whole-blob hash was then (for the log). */
  private allStored: { at: number; hashed: number } | undefined
  private checkpointing: Promise<void> = Promise.resolve()
  private uncheckpointed = 0
  /** The partial file was thrown away (wrong content): nothing more is recorded for it. */
  private discarded = false
  private readers = 0
  private readonly waiters = new Set<() => void>()
  private idleTimer: NodeJS.Timeout | undefined
  private tick: NodeJS.Timeout | undefined
  private scheduled = false
  /** The swarm's first answers are in (see start): origin fetches may be decided. */
  private swarmReady = false
  readonly done: Promise<void>
  private resolveDone!: () => void
  private rejectDone!: (e: Error) => void

  constructor(init: TransferInit, components: TransferComponents) {
    this.init = init
    this.opts = { ...DEFAULTS, ...stripUndefined(init) }
    this.digest = init.digest
    this.size = init.size
    this.pieceSize = pieceSizeFor(init.size)
    this.pieceCount = Math.max(1, Math.ceil(init.size / this.pieceSize))
    this.store = components.store
    this.log = components.logger.child({ digest: init.digest.value })
    this.originFetcher = components.origin
    this.swarm = components.swarm
    this.onBytes = components.onBytes ?? (() => {})
    this.gate = components.originGate ?? new OriginGate()
    this.have = new Bitfield(this.pieceCount)
    this.hashes = new Array<Buffer<ArrayBuffer> | undefined>(this.pieceCount)
    this.deliveredBy = new Array<string | undefined>(this.pieceCount)
    this.tieBreak = randomFillSync(new Uint32Array(this.pieceCount))
    this.done = new Promise((resolve, reject) => {
      this.resolveDone = resolve
      this.rejectDone = reject
    })
    this.done.catch(() => {})
  }

  /** Peers join after construction: the swarm needs the transfer to serve its pieces. */
  attachSwarm(swarm: BlobSwarm): void {
    this.swarm = swarm
  }

  get status(): TransferState {
    return this.state
  }

  get downloading(): boolean {
    return this.state === 'running'
  }

  /** Opens the partial file (resuming recorded pieces) and starts fetching. */
  async start(): Promise<void> {
    try {
      const { handle, progress } = await this.store.openPartial(this.digest, this.size)
      this.handle = handle
      if (progress !== undefined) this.resume(progress)
      if (this.size === 0) {
        this.have = Bitfield.full(this.pieceCount)
        this.hashes[0] = createHash('sha256').digest()
      }
    } catch (err) {
      this.fail(err)
      return
    }
    await this.advanceHash()
    if (this.state !== 'running') return
    const swarm = this.swarm
    if (swarm !== undefined) {
      // Peers are asked for pieces as soon as their Hello says what they hold (a warm pull need
      // not wait for the slowest session and the settle time). Who fetches what from the origin
      // is decided only once the peers downloading it now have declared themselves (`ready`): a
      // node that thinks it is alone fetches everything.
      swarm.onChange(() => this.schedule())
      swarm.ready
        .catch(() => {})
        .then(() => {
          this.swarmReady = true
          this.schedule()
        })
    } else {
      this.swarmReady = true
    }
    this.tick = setInterval(() => {
      this.giveUpStalled(Date.now())
      this.schedule()
    }, 250)
    this.tick.unref()
    this.schedule()
  }

  private resume(progress: PartialInfo): void {
    const bits = new Bitfield(this.pieceCount, Buffer.from(progress.bitfield, 'base64'))
    for (let i = 0; i < this.pieceCount; i++) {
      const h = progress.hashes[i]
      if (bits.has(i)) {
        this.have.set(i)
        if (typeof h === 'string') this.hashes[i] = Buffer.from(h, 'hex')
        this.deliveredBy[i] = 'disk'
      }
    }
    if (this.have.size > 0) {
      this.log.info({ pieces: this.have.size, of: this.pieceCount }, 'resuming partial blob')
    }
  }

  // ---- LocalBlob (what peers may fetch from us) ----

  has(index: number): boolean {
    return this.have.has(index)
  }

  bitfield(): Uint8Array<ArrayBuffer> {
    return this.have.bytes
  }

  hashOf(index: number): Uint8Array | undefined {
    return this.have.has(index) ? this.hashes[index] : undefined
  }

  async pieceTable(): Promise<Uint8Array[] | undefined> {
    return undefined
  }

  async readPiece(index: number, into?: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
    const [start, end] = this.bounds(index)
    return this.readPieceInto(index, into?.subarray(0, end - start) ?? Buffer.allocUnsafe(end - start))
  }

  /** Piece `index` into `buf` (its exact length). */
  private async readPieceInto<B extends Uint8Array>(index: number, buf: B): Promise<B> {
    if (!this.have.has(index)) throw new ShoalError('BLOB_UNKNOWN', `piece ${index} not here`)
    const [start] = this.bounds(index)
    const handle = this.handle
    if (handle !== undefined) {
      await readFully(handle, buf, start)
      return buf
    }
    // Complete and closed: the blob is in the store now.
    if (this.state !== 'complete') throw new ShoalError('BLOB_UNKNOWN', `piece ${index} not readable`)
    const fh = await open(this.store.blobPath(this.digest), 'r')
    try {
      await readFully(fh, buf, start)
    } finally {
      await fh.close()
    }
    return buf
  }

  // ---- scheduling ----

  private bounds(index: number): [number, number] {
    const start = index * this.pieceSize
    return [start, Math.min(this.size, start + this.pieceSize)]
  }

  private schedule(): void {
    if (this.scheduled || this.state !== 'running') return
    this.scheduled = true
    queueMicrotask(() => {
      this.scheduled = false
      try {
        this.scheduleNow()
      } catch (err) {
        this.fail(err)
      }
    })
  }

  private scheduleNow(): void {
    // A transfer that did not ask for an origin slot this round gives up its place in the queue.
    if (!this.scheduleRound()) this.gate.forget(this)
  }

  /** One scheduling round; true when it waits for one of the node's origin slots. */
  private scheduleRound(): boolean {
    if (this.state !== 'running' || this.handle === undefined) return false
    if (this.have.complete) return false
    const peers = (this.swarm?.peers() ?? []).filter((p) => p !== undefined)
    const downloaders = [this.swarm?.selfId ?? 'self', ...peers.filter((p) => p.downloading).map((p) => p.id)]
    const now = Date.now()
    for (const id of downloaders) {
      if (this.firstSeen.has(id)) continue
      this.firstSeen.set(id, now)
      this.reviewOwners = true
    }
    this.noteLeavers(downloaders, now)
    const swarmActive = peers.length > 0
    if (swarmActive) this.requestFromPeers(peers)
    if (!this.swarmReady) return false
    // A peer we are opening a session with may hold the blob: on a busy node its Hello can come
    // after the discovery wait. Nothing from the origin until it has spoken (bounded). The same
    // for a peer whose session was just replaced: for a moment it is in no session at all.
    const swarm = this.swarm
    if (
      swarm !== undefined &&
      ((swarm.pendingPeers() > 0 && now - this.startedAt < this.opts.helloWaitMs) || swarm.rejoining() > 0)
    ) {
      this.refreshClaims(now)
      return false
    }
    if (swarmActive && this.reviewOwners) this.handOff(peers, downloaders)
    let originSlots: number | undefined
    let waiting = false
    /** Pieces nobody in session holds, this node included (the only ones a takeover may take). */
    let unheld = 0
    for (const i of this.originOrder()) {
      if (this.have.has(i) || this.inflight.has(i)) continue
      if (peers.some((p) => p.has(i))) continue // a peer has it: requestFromPeers' business
      unheld++
      if (!swarmActive) {
        // Alone: long Range requests, the cheapest way over HTTP; bounded, so that peers that turn
        // up meanwhile are asked for what is left.
        if (this.originInflight === 0)
          this.fetchFromOrigin(
            i,
            this.swarm === undefined ? this.pieceCount : Math.max(1, Math.floor(ALONE_RUN_BYTES / this.pieceSize)),
          )
        continue
      }
      if (!this.mayFetchFromOrigin(i, now)) continue
      // Ours: claim it now, even if it must wait for an origin slot, so that the other
      // downloaders wait for our Have instead of fetching it too.
      if (!this.claimedAt.has(i)) {
        this.claim(i, now)
        this.claimStarted.set(i, now)
      }
      // Two downloaders whose views differed may claim one piece at once: both wait a moment,
      // and the one rendezvous ranks lower yields. Deterministic, without a coordinator. A piece
      // taken over waits for its owner's go-ahead instead.
      const takingOver = this.takenOver.has(i)
      if (!takingOver && now - (this.claimStarted.get(i) ?? 0) < this.opts.claimSettleMs) continue
      if (this.yieldsTo(i)) continue
      if (takingOver && !this.goAhead(i, now)) continue
      if (waiting || this.originInflight >= this.opts.originConcurrency) continue
      // One of this node's few origin slots (see OriginGate), lowest piece first: pieces then come
      // whole one after another, and peers exchange them while the origin sends the rest. The loop
      // goes on after a refusal: the pieces after it must still be claimed.
      originSlots ??= this.gate.limitFor(this.originFetchers(peers, downloaders.length, now))
      if (!this.gate.tryTake(this, takingOver ? 0 : i / this.pieceCount, originSlots, () => this.schedule())) {
        waiting = true
        continue
      }
      this.fetchFromOrigin(i, 1, true)
    }
    if (unheld > 0 && !waiting && !this.hasQueuedClaims() && this.gate.idle(this)) this.takeOver(peers, now)
    else if (unheld > 0 && swarmActive && this.takenOver.size === 0) this.takeOverLagging(peers, now)
    this.refreshClaims(now)
    return waiting
  }

  /**
   * Notes when a downloader of the last round is no longer one: its pieces have new owners. Keeps
   * the round's downloaders for `ownerOf` (its owners are asked again only when they change).
   */
  private noteLeavers(downloaders: string[], now: number): void {
    const key = downloaders.join('\n')
    if (key === this.lastDownloadersKey) return
    this.lastDownloadersKey = key
    this.roundDownloaders = downloaders
    this.owners = []
    const current = new Set(downloaders)
    for (const id of this.lastDownloaders) {
      if (!current.has(id)) {
        this.downloaderLeftAt = now
        break
      }
    }
    this.lastDownloaders = current
  }

  /**
   * Downloaders that came after this node claimed its pieces own some of them by the rendezvous
   * now: the queued ones (not started, not taken over) go to their new owner, which claims and
   * fetches them through its own origin slots. Without this, the first node of a staggered rollout
   * — alone for a moment, so every piece's owner — kept every claim: the late starters only took
   * pieces over one at a time from the backs of its queues, and the fronts of the layers, which the
   * clients wait for, came through the few origin slots of one node (lab P2: the clients held a
   * quarter of the image at 22 s, against 13.5 s when all start together). Only pieces this node
   * claimed as their owner go: one it took because its owner was slow to claim stays (handing it
   * back would undo that), and each hand-off goes to a node that ranks higher than this one, so a
   * piece passed on again (a node that sees a downloader this one did not) moves up and stops.
   */
  private handOff(peers: SwarmPeer[], downloaders: string[]): void {
    this.reviewOwners = false
    const swarm = this.swarm
    if (swarm?.handOffClaim === undefined || this.ownerClaimed.size === 0) return
    const takers = new Set(peers.filter((p) => p.takesHandoffs === true).map((p) => p.id))
    if (takers.size === 0) return
    let handed = 0
    for (const i of [...this.ownerClaimed]) {
      if (!this.claimedAt.has(i) || this.have.has(i)) {
        this.ownerClaimed.delete(i)
        continue
      }
      if (this.inflight.has(i) || this.takenOver.has(i)) continue
      // A takeover of it is waiting for this node's answer (yieldsTo gives it).
      if (swarm.claimOf(i)?.takeover === true) continue
      const owner = this.ownerOf(i)
      if (owner === swarm.selfId || !takers.has(owner) || !swarm.handOffClaim(i, owner)) continue
      this.dropClaim(i)
      handed++
    }
    if (handed > 0)
      this.log.debug({ handed, downloaders: downloaders.length }, 'queued pieces handed to their new owners')
  }

  /** The downloader the rendezvous picks, among this round's, to fetch piece `index` from the origin. */
  private ownerOf(index: number): string {
    const cached = this.owners[index]
    if (cached !== undefined) return cached
    const downloaders = this.roundDownloaders
    let owner = downloaders[0] ?? ''
    let best = -1n
    for (const id of downloaders) {
      const score = rendezvousScore(id, this.digest.value, index)
      if (score > best) {
        best = score
        owner = id
      }
    }
    this.owners[index] = owner
    return owner
  }

  private selfScore(index: number, selfId: string): bigint {
    let score = this.selfScores[index]
    if (score === undefined) {
      score = rendezvousScore(selfId, this.digest.value, index)
      this.selfScores[index] = score
    }
    return score
  }

  /**
   * The order in which a scheduling round looks at pieces for the origin: pieces taken over from
   * other downloaders first (lowest first), then the rest, lowest first. A taken-over piece is one
   * the swarm waits for: its owner lags, or it was the back of the longest queue when this node
   * had nothing else to fetch. A herd's late starter takes over such pieces the moment it starts,
   * and the pieces handed to it a moment later, lower in their blobs, then went first: in lab P2
   * (8 runs with debug logs) such a piece waited 20–26 s behind them in 3 runs and was the last
   * origin fetch, seconds after the others.
   */
  private *originOrder(): Generator<number> {
    if (this.takenOver.size === 0) {
      for (let i = 0; i < this.pieceCount; i++) yield i
      return
    }
    // A snapshot: the round may drop a takeover (yieldsTo) while it runs.
    const taken = new Set(this.takenOver)
    yield* [...taken].sort((a, b) => a - b)
    for (let i = 0; i < this.pieceCount; i++) if (!taken.has(i)) yield i
  }

  /** This node no longer claims piece `index` (it left it to another). */
  private dropClaim(index: number): void {
    this.claimedAt.delete(index)
    this.claimStarted.delete(index)
    this.takenOver.delete(index)
    this.ownerClaimed.delete(index)
  }

  /** Pieces this node claimed and has not started fetching. */
  private hasQueuedClaims(): boolean {
    for (const i of this.claimedAt.keys()) if (!this.have.has(i) && !this.inflight.has(i)) return true
    return false
  }

  /**
   * This node has no origin pieces of its own left and its origin slots are idle: it takes over one
   * piece still queued at another downloader, from the back half of the longest queue (pieces that
   * downloader would fetch last). The rendezvous gives some nodes twice the pieces of others, and
   * each fetches its own through a slot or two: at the end of a cold herd the origin's link idled
   * while the last queues drained (lab P1: the origin's rate fell from 11.4 to 2–7 MiB/s for its
   * last 5–8 s). The piece then goes through the scheduling loop like any claimed piece, and is
   * fetched once its owner left it to this node (`goAhead`; `yieldsTo` settles it with the owner
   * and with other takers).
   */
  private takeOver(peers: SwarmPeer[], now: number): void {
    const swarm = this.swarm
    if (swarm === undefined) return
    const queues = new Map<string, number[]>()
    for (let i = 0; i < this.pieceCount; i++) {
      const owner = this.queuedElsewhere(i, peers, now)
      if (owner === undefined) continue
      const queue = queues.get(owner)
      if (queue === undefined) queues.set(owner, [i])
      else queue.push(i)
    }
    // From the back half of the longest queue (the pieces its owner would fetch last), the one
    // this node ranks highest by rendezvous: idle nodes that look at one queue at once (a herd's
    // late starters) then mostly take different pieces.
    let longest: number[] = []
    for (const queue of queues.values()) if (queue.length > longest.length) longest = queue
    this.takeOverOneOf(
      longest.slice(Math.floor(longest.length / 2)),
      now,
      'taking over a piece queued at another downloader',
      {
        queued: longest.length,
      },
    )
  }

  /** The downloader that has piece `index` queued (claimed, not started), if not this node; nobody holds it. */
  private queuedElsewhere(index: number, peers: SwarmPeer[], now: number): string | undefined {
    const swarm = this.swarm
    if (swarm === undefined || this.have.has(index) || this.inflight.has(index) || this.claimedAt.has(index)) return
    if (peers.some((p) => p.has(index))) return
    const claim = swarm.claimOf(index)
    if (claim?.queued !== true || claim.peer === swarm.selfId || now - claim.at >= this.opts.claimTimeoutMs) return
    return claim.peer
  }

  /** Takes over the piece of `candidates` this node ranks highest by rendezvous (see `takeOver`). */
  private takeOverOneOf(candidates: number[], now: number, why: string, logged: Record<string, number>): void {
    const swarm = this.swarm
    if (swarm === undefined) return
    let index: number | undefined
    let best = -1n
    for (const i of candidates) {
      const score = this.selfScore(i, swarm.selfId)
      if (score > best) {
        index = i
        best = score
      }
    }
    if (index === undefined) return
    this.takenOver.add(index)
    this.claim(index, now)
    this.claimStarted.set(index, now)
    this.log.debug({ piece: index, from: swarm.claimOf(index)?.peer, ...logged }, why)
  }

  /**
   * A piece queued at a downloader that lags this node: the lowest ones still queued elsewhere,
   * when they lie `laggingPieces` or more before the last piece of its own this node started from
   * the origin.
   * Each downloader fetches its own pieces, lowest first, through one origin stream; a stream the
   * origin's link starves (lab P1: one node at ~0.6 of the others' rate) held the pieces its owner
   * had not reached, and every client's in-order stream stood still at the first of them for 4–7 s
   * while the rest of the layer was long there. Taking them over only once a node had nothing of
   * its own left came at the herd's end. Now a node ahead takes over one lagging piece per blob at
   * a time (the lowest two are the candidates; the one it ranks highest by rendezvous, so that
   * several nodes ahead mostly take different ones), fetches it before its own (lower pieces first,
   * see OriginGate), and the owner's go-ahead settles it as for any takeover: an owner that has
   * started the piece keeps it.
   */
  private takeOverLagging(peers: SwarmPeer[], now: number): void {
    if (this.originFront < 0) return
    const bound = this.originFront - Math.max(this.opts.laggingPieces, Math.ceil(this.pieceCount / 8))
    const candidates: number[] = []
    for (let i = 0; i <= bound && candidates.length < 2; i++) {
      if (this.queuedElsewhere(i, peers, now) !== undefined) candidates.push(i)
    }
    this.takeOverOneOf(candidates, now, 'taking over a piece queued at a downloader that lags', {
      front: this.originFront,
    })
  }

  /**
   * How many nodes still fetch this blob's pieces from the origin: those with a live claim on a
   * piece nobody has yet (this node with its own claims). The origin's streams are shared among
   * them (see OriginGate): at the end of a herd, when one node still has pieces of its own to
   * fetch and the others wait for them, it takes the whole share instead of one stream (the lab:
   * the last node's pieces came one at a time at a sixth of the origin's rate, for 9 s). While a
   * piece nobody has is still unclaimed, every downloader counts.
   */
  private originFetchers(peers: SwarmPeer[], downloaders: number, now: number): number {
    const swarm = this.swarm
    if (swarm === undefined) return 1
    const fetchers = new Set<string>()
    for (let i = 0; i < this.pieceCount; i++) {
      if (this.have.has(i) || peers.some((p) => p.has(i))) continue
      if (this.claimedAt.has(i)) {
        fetchers.add(swarm.selfId)
        continue
      }
      const claim = swarm.claimOf(i)
      if (claim === undefined || now - claim.at >= this.opts.claimTimeoutMs) return downloaders
      fetchers.add(claim.peer)
    }
    return Math.max(1, fetchers.size)
  }

  /**
   * Another downloader claimed a piece this node claimed and has not started: true when this node
   * leaves it to that one. Two that each think the piece theirs (their views of the downloaders
   * differed): the higher rendezvous score keeps it. A takeover of this node's queued piece: the
   * taker keeps it, and is told so (`yieldClaim`). A taker keeps the piece its owner left to it,
   * leaves one the owner left to another taker or that another node fetches now. It never leaves
   * it to a waiting taker on its own: without the owner's word it fetches after `takeoverWaitMs`
   * (see `goAhead`). When it did (of two takers, the higher rendezvous score kept it), a go-ahead
   * that came late, or not at all, to the taker it named left the piece to nobody: both takers
   * stood back, the first one's claim held the piece for its 30 s, and every client stood still at
   * it (lab P2, thirty-second pass: 3 of 38 runs, at 79bc2b0 and 43af938, 4–7 s). Two takers that
   * both lack the word now both fetch it: one piece twice from the origin.
   */
  private yieldsTo(index: number): boolean {
    const swarm = this.swarm
    if (swarm === undefined) return false
    const other = swarm.claimOf(index)
    const ranksHigher = (peer: string): boolean =>
      rendezvousScore(peer, this.digest.value, index) > this.selfScore(index, swarm.selfId)
    const takingOver = this.takenOver.has(index)
    let yields: boolean
    if (takingOver) {
      const to = swarm.yieldedTo?.(index)
      yields =
        to !== undefined
          ? to !== swarm.selfId
          : other?.fetching === true || (other !== undefined && !other.queued && !other.takeover)
    } else {
      if (other === undefined) return false
      yields = other.takeover === true || ranksHigher(other.peer)
    }
    if (!yields) return false
    this.dropClaim(index)
    // The owner answers the takeover it heard: that taker's go-ahead (one taker, whoever else asks).
    if (!takingOver && other?.takeover === true && swarm.yieldClaim !== undefined) swarm.yieldClaim(index, other.peer)
    else swarm.withdrawClaim?.(index)
    return true
  }

  /**
   * A piece taken over may be fetched: its owner left it to this node, or never said (bounded), or
   * its claim is gone — the owner left or died (lab P3), and nobody is left to answer.
   */
  private goAhead(index: number, now: number): boolean {
    const to = this.swarm?.yieldedTo?.(index)
    if (to !== undefined) return to === this.swarm?.selfId
    if (this.swarm?.claimOf(index) === undefined) return true
    return now - (this.claimStarted.get(index) ?? now) >= this.opts.takeoverWaitMs
  }

  /** Says (again) that this node fetches piece `index`: queued, taken over, or fetching now. */
  private claim(index: number, now: number): void {
    this.claimedAt.set(index, now)
    const kind =
      this.inflight.get(index) === 'origin' ? {} : this.takenOver.has(index) ? { takeover: true } : { queued: true }
    this.swarm?.announceClaim(index, kind)
  }

  /**
   * Claims are repeated while this node makes progress from the origin; a node whose origin
   * stalls stops repeating them and the others take its pieces once the claims expire.
   */
  private refreshClaims(now: number): void {
    // Waiting for an origin slot is not stalling: then the node's fetches of other blobs count.
    const last =
      this.originInflight > 0 ? this.lastOriginProgress : Math.max(this.lastOriginProgress, this.gate.lastProgress)
    const progressing = now - last < this.opts.claimTimeoutMs / 2
    for (const [index, at] of this.claimedAt) {
      if (this.have.has(index)) {
        this.claimedAt.delete(index)
        this.ownerClaimed.delete(index)
        continue
      }
      if (progressing && now - at > this.opts.claimTimeoutMs / 3) this.claim(index, now)
    }
  }

  /**
   * Pieces peers have: the ones clients wait for next first, then rarest first (fewest holders) over a
   * window of the next missing pieces, each from the holder with the best recent throughput per
   * request in flight.
   */
  private requestFromPeers(peers: SwarmPeer[]): void {
    if (this.peerInflight >= this.opts.maxPeerRequests) return
    // Most rounds (one per message that changes anything) find every peer at its limit.
    const now = Date.now()
    if (!peers.some((p) => p.inflight < this.opts.peerRequestsPerPeer && p.busyUntil <= now)) return
    const first = this.have.firstMissing(0)
    const candidates: { index: number; holders: number }[] = []
    for (let i = first; i < this.pieceCount && candidates.length < RAREST_WINDOW; i++) {
      if (this.have.has(i) || this.inflight.has(i)) continue
      let holders = 0
      for (const p of peers) if (p.has(i)) holders++
      if (holders > 0) candidates.push({ index: i, holders })
    }
    // The pieces the clients wait for — the first missing one and the few after it — go first, in
    // order, once two peers have them: the clients read the blob in order, and so does the
    // whole-blob hash, which otherwise reads most of the blob back at its end (with rarest first
    // alone, the pieces every peer holds came last, often the ones at the start). A piece only
    // one peer holds is not hurried: its holder's upload is better spent on pieces the swarm lacks.
    // Among pieces equally rare, each node has its own random order. With one order for all (by
    // index), every downloader asked a lone holder — a warm seed, or a piece's owner — for the same
    // pieces: the holder's upload carried each piece many times and the swarm had nothing to trade
    // among itself (lab P4 on 20 Mbit/s links: not done after 5 × T*).
    const urgent = (c: { index: number; holders: number }): boolean =>
      c.index < first + FRONTIER_PIECES && c.holders > 1
    candidates.sort((a, b) => {
      const ua = urgent(a)
      if (ua !== urgent(b)) return ua ? -1 : 1
      if (ua) return a.index - b.index
      return a.holders - b.holders || (this.tieBreak[a.index] ?? 0) - (this.tieBreak[b.index] ?? 0)
    })
    for (const c of candidates) {
      if (this.peerInflight >= this.opts.maxPeerRequests) return
      const free = peers.filter(
        (p) =>
          p.has(c.index) &&
          p.inflight < this.opts.peerRequestsPerPeer &&
          p.busyUntil <= now &&
          p.deferredUntil(c.index) <= now,
      )
      if (free.length > 0) this.requestFromPeer(c.index, pickPeer(free))
    }
  }

  /** The cold-start rule: only the rendezvous owner fetches a piece no peer has, unless it is slow or gone. */
  private mayFetchFromOrigin(index: number, now: number): boolean {
    const swarm = this.swarm
    if (swarm === undefined || this.claimedAt.has(index)) return true
    const claim = swarm.claimOf(index)
    const claimed = claim !== undefined && now - claim.at < this.opts.claimTimeoutMs
    // Handed to this node by its earlier owner (see handOff): its own now, unless a third node has
    // claimed it meanwhile.
    if (swarm.takeHandOff?.(index) === true && !claimed) {
      this.ownerClaimed.add(index)
      this.reviewOwners = true
      return true
    }
    if (claimed) return false
    const owner = this.ownerOf(index)
    if (owner === swarm.selfId) {
      this.ownerClaimed.add(index)
      return true
    }
    // The owner gets `ownerWaitMs` from when we first saw it downloading to claim the piece, and
    // `ownerChangeWaitMs` from when another downloader left (it may be the owner since then).
    const known = Math.max(this.startedAt, this.firstSeen.get(owner) ?? now)
    const take =
      now - known > this.opts.ownerWaitMs &&
      now - this.downloaderLeftAt > this.opts.ownerChangeWaitMs &&
      (claim === undefined || now - claim.at >= this.opts.claimTimeoutMs)
    if (take) {
      this.log.debug(
        { piece: index, owner, ownerSeenMs: now - known, claim: claim?.peer, claimAgeMs: claim && now - claim.at },
        'taking over a piece from its rendezvous owner',
      )
    }
    return take
  }

  private requestFromPeer(index: number, peer: SwarmPeer): void {
    const swarm = this.swarm
    if (swarm === undefined) return
    this.inflight.set(index, peer.id)
    this.peerInflight++
    // No fixed timeout: under load a peer's queue can hold a request for long while it sends
    // others' pieces; giving up then wasted the piece it sent anyway (a tenth of the lab's bytes).
    const stop = new AbortController()
    const started = Date.now()
    this.peerRequests.set(index, { peer, started, stop })
    const signal = AbortSignal.any([this.controller.signal, stop.signal])
    swarm
      .request(peer, index, signal)
      .then(async (data) => {
        const [start, end] = this.bounds(index)
        if (data.byteLength !== end - start) {
          swarm.ban(peer.id, `piece ${index} has ${data.byteLength} bytes, expected ${end - start}`)
          swarm.release(data)
          return
        }
        const hash = createHash('sha256').update(data).digest()
        const expected = this.expectedHash(index, peer)
        if (expected !== undefined && !hash.equals(expected)) {
          swarm.ban(peer.id, `piece ${index} does not match its announced hash`)
          swarm.release(data)
          return
        }
        // Counted before it is stored: storing the last piece completes the blob and answers its
        // clients, who must find every byte of it in the books by then.
        this.onBytes('peer', data.byteLength)
        await this.storePiece(index, data, hash, peer.id)
        // Written, and fed to the whole-blob hash if it was next (storePiece waits for both).
        swarm.release(data)
        this.countOutcome('ok')
        this.log.debug({ peer: peer.id, index, ms: Date.now() - started }, 'piece received')
      })
      .catch((err: unknown) => {
        this.countOutcome(
          stop.signal.aborted
            ? 'stalled'
            : err instanceof ShoalError && err.code === 'TOOMANYREQUESTS'
              ? err.detail === 'sending'
                ? 'deferred'
                : 'busy'
              : err instanceof ShoalError && err.code === 'BLOB_UNKNOWN'
                ? 'refused'
                : this.controller.signal.aborted
                  ? 'stopped'
                  : 'closed',
        )
        if (this.state === 'running') this.log.debug({ peer: peer.id, index, err: String(err) }, 'piece request failed')
      })
      .finally(() => {
        this.peerRequests.delete(index)
        this.inflight.delete(index)
        this.peerInflight--
        this.schedule()
      })
  }

  private countOutcome(outcome: string): void {
    this.requestOutcomes[outcome] = (this.requestOutcomes[outcome] ?? 0) + 1
  }

  /** Gives up requests whose peer sent no piece bytes for `peerStallMs`, or that are too old. */
  private giveUpStalled(now: number): void {
    for (const r of this.peerRequests.values()) {
      const quiet = now - Math.max(r.started, r.peer.lastDataAt)
      if (quiet > this.opts.peerStallMs || now - r.started > this.opts.peerRequestTimeoutMs) {
        r.stop.abort(new ShoalError('ABORTED', `peer ${r.peer.id} stalled`))
      }
    }
  }

  /** The hash to check a peer's piece against: another peer's word first, then the sender's own. */
  private expectedHash(index: number, sender: SwarmPeer): Buffer | undefined {
    for (const p of this.swarm?.peers() ?? []) {
      if (p.id === sender.id) continue
      const h = p.hashOf(index)
      if (h !== undefined) return Buffer.from(h)
    }
    const own = sender.hashOf(index)
    return own === undefined ? undefined : Buffer.from(own)
  }

  /** `gated`: the fetch holds one of the node's origin slots, given back when it ends. */
  private fetchFromOrigin(first: number, maxRun: number, gated = false): void {
    let last = first
    while (
      last + 1 < this.pieceCount &&
      last + 1 - first < maxRun &&
      !this.have.has(last + 1) &&
      !this.inflight.has(last + 1)
    ) {
      last++
    }
    const now = Date.now()
    // How far this node's own pieces have come (a piece taken over from a queue that lags says nothing).
    if (gated && !this.takenOver.has(first)) this.originFront = Math.max(this.originFront, last)
    for (let i = first; i <= last; i++) {
      this.inflight.set(i, 'origin')
      this.takenOver.delete(i)
      // Fetching now: also a queued or taken-over claim is said again, as one that is fetching.
      this.claim(i, now)
    }
    this.originInflight++
    this.log.debug({ first, last, sinceStartMs: now - this.startedAt }, 'origin fetch')
    this.originRun(first, last)
      .catch((err: unknown) => {
        if (this.state !== 'running') return
        const failures = (this.originFailures.get(first) ?? 0) + 1
        this.originFailures.set(first, failures)
        if (failures >= this.opts.originAttempts || FINAL_ORIGIN_ERRORS.has((err as ShoalError).code)) {
          this.fail(err)
          return
        }
        this.log.info({ piece: first, failures, err: String(err) }, 'origin fetch broke off; retrying')
      })
      .finally(() => {
        for (let i = first; i <= last; i++) if (this.inflight.get(i) === 'origin') this.inflight.delete(i)
        this.originInflight--
        if (gated) this.gate.release()
        this.schedule()
      })
  }

  /** Pieces [first, last] in one Range request, each stored as soon as it is whole. */
  private async originRun(first: number, last: number): Promise<void> {
    const [start] = this.bounds(first)
    const [, end] = this.bounds(last)
    const body = await this.originFetcher.fetch(start, end, this.controller.signal)
    let index = first
    let [pStart, pEnd] = this.bounds(index)
    let buf = originPieces.take(pEnd - pStart)
    let filled = 0
    let received = 0
    let storing: Promise<void> = Promise.resolve()
    try {
      for await (const chunk of body) {
        let off = 0
        if (received + chunk.byteLength > end - start) {
          throw new ShoalError('SIZE_INVALID', `${this.originFetcher.name} sent more than asked`, { status: 502 })
        }
        received += chunk.byteLength
        this.lastOriginProgress = Date.now()
        this.gate.progress(this.lastOriginProgress)
        while (off < chunk.byteLength) {
          const n = Math.min(chunk.byteLength - off, buf.length - filled)
          buf.set(chunk.subarray(off, off + n), filled)
          filled += n
          off += n
          if (filled === buf.length) {
            // Store this piece while the next one arrives; at most one store in flight (2 buffers).
            await storing
            const [piece, at] = [buf, index]
            // Piece hashes are for peers: without a swarm, a piece table is made only if ever needed.
            const hash = this.swarm === undefined ? undefined : createHash('sha256').update(piece).digest()
            // Counted before it is stored, as a peer's piece is (see requestFromPeer).
            this.onBytes('origin', piece.length)
            storing = this.storePiece(at, piece, hash, 'origin').then(() => {
              // Written and hashed: nothing reads it any more.
              originPieces.give(piece)
              this.inflight.delete(at)
            })
            index++
            if (index > last) break
            ;[pStart, pEnd] = this.bounds(index)
            buf = originPieces.take(pEnd - pStart)
            filled = 0
          }
        }
      }
    } finally {
      await storing
    }
    if (index <= last) {
      throw new ShoalError('UPSTREAM_ERROR', `${this.originFetcher.name} ended the body early (piece ${index})`, {
        status: 502,
      })
    }
  }

  private async storePiece(
    index: number,
    data: Uint8Array,
    hash: Buffer<ArrayBuffer> | undefined,
    from: string,
  ): Promise<void> {
    if (this.have.has(index) || this.state !== 'running') return
    const handle = this.handle
    if (handle === undefined) return
    const [start] = this.bounds(index)
    try {
      await writeAll(handle, data, start)
    } catch (err) {
      // A local disk problem (ENOSPC, EIO): no source can fix it, so stop at once.
      this.fail(err)
      throw err
    }
    this.hashes[index] = hash
    this.deliveredBy[index] = from
    this.have.set(index)
    if (this.have.complete) this.allStored = { at: Date.now(), hashed: this.hashedPieces }
    this.uncheckpointed += data.byteLength
    if (hash !== undefined) this.swarm?.announceHave(index, hash, from === 'origin' ? undefined : from)
    this.wake()
    // The next piece of the whole-blob hash can use these bytes without reading them back.
    await this.advanceHash(index, data)
    await this.checkpoint()
  }

  /**
   * Feeds the whole-blob hash with the contiguous pieces; verifies and commits at the end.
   *
   * Pieces that came out of order (most of them with peers) are read back from the partial file,
   * `HASH_READ_AHEAD_BYTES` of them at a time (four pieces of 1 MiB, one of 4 or 16 MiB): one read
   * at a time made each piece wait a whole round trip through a busy node's thread pool and event
   * loop, and as the piece the hash waits for often comes among the last, a blob's clients waited
   * seconds after its last piece for the hash to catch up (lab P2: 4.6–5.7 s on the first node).
   * Sixteen at a time caught up faster still (lab P4: 0.9 against 2.3 s per layer, median), but
   * the pulls were not faster (two pairs), and four layers then put 64 reads on a thread pool of
   * four that piece writes and reads for peers share (BENCHMARKS, twenty-seventh pass). The
   * buffers are reused (a fresh one per piece was a large share of a daemon's allocations) and
   * dropped when the blob is hashed.
   */
  private advanceHash(justWritten?: number, data?: Uint8Array): Promise<void> {
    this.hashing = this.hashing.then(async () => {
      const ahead: { buf?: Buffer<ArrayBuffer>; read: Promise<Uint8Array> }[] = []
      const depth = Math.max(1, Math.floor(HASH_READ_AHEAD_BYTES / this.pieceSize))
      try {
        for (;;) {
          for (
            let j = this.hashedPieces + ahead.length;
            ahead.length < depth && j < this.pieceCount && this.have.has(j);
            j++
          ) {
            if (j === justWritten && data !== undefined) {
              ahead.push({ read: Promise.resolve(data) })
              continue
            }
            const buf = this.hashScratch.pop() ?? Buffer.allocUnsafe(this.pieceSize)
            const read = this.readPiece(j, buf)
            // Awaited in order below; after a failed one the rest are only waited for.
            read.catch(() => {})
            ahead.push({ buf, read })
          }
          const head = ahead.shift()
          if (head === undefined) break
          this.hasher.update(await head.read)
          if (head.buf !== undefined) this.hashScratch.push(head.buf)
          this.hashedPieces++
        }
      } finally {
        // No read may still be filling a buffer when the chain moves on (or fails).
        await Promise.allSettled(ahead.map((a) => a.read))
      }
      if (this.hashedPieces === this.pieceCount) this.hashScratch = []
      if (this.hashedPieces === this.pieceCount && this.state === 'running') await this.finish()
    })
    return this.hashing.catch((err: unknown) => this.fail(err))
  }

  /**
   * Records progress (the bitfield in LevelDB) every CHECKPOINT_BYTES, and when the
   * transfer stops: after a crash at most that much is fetched again.
   */
  private checkpoint(force = false): Promise<void> {
    if (!force && this.uncheckpointed < CHECKPOINT_BYTES) return this.checkpointing
    this.uncheckpointed = 0
    this.checkpointing = this.checkpointing.then(async () => {
      const handle = this.handle
      if (handle === undefined || this.state === 'complete' || this.discarded) return
      // No fsync here: a killed process loses nothing the kernel holds, and after a power loss a
      // recorded piece that did not reach the disk fails the final digest check and is
      // fetched again (repair). The complete blob is fsynced before its rename.
      await this.store.checkpoint(this.digest, {
        size: this.size,
        pieceSize: this.pieceSize,
        bitfield: Buffer.from(this.have.bytes).toString('base64'),
        hashes: this.hashes.map((h, i) => (h !== undefined && this.have.has(i) ? h.toString('hex') : null)),
      })
    })
    return this.checkpointing.catch((err: unknown) => this.log.warn({ err: String(err) }, 'checkpoint failed'))
  }

  private async finish(): Promise<void> {
    const hex = this.hasher.digest('hex')
    if (hex !== this.digest.hex) {
      await this.repair()
      return
    }
    const verifiedAt = Date.now()
    await this.commit()
    this.log.info(
      {
        size: this.size,
        ms: Date.now() - this.startedAt,
        storedMs: this.allStored && this.allStored.at - this.startedAt,
        verifiedMs: verifiedAt - this.startedAt,
        hashedAtStored: this.allStored?.hashed,
        peerRequests: this.requestOutcomes,
      },
      'blob verified and stored',
    )
  }

  /** Verified: clients may have the last byte now; then the partial becomes a complete blob. */
  private async commit(): Promise<void> {
    const handle = this.handle
    if (handle === undefined) throw new Error('partial file not open')
    this.state = 'complete'
    this.stopTimers()
    this.wake()
    await this.checkpointing
    const info: { size: number; mediaType?: string; pieceHashes?: string[] } = { size: this.size }
    if (this.hashes.every((h) => h !== undefined)) info.pieceHashes = this.hashes.map((h) => h.toString('hex'))
    if (this.init.mediaType !== undefined) info.mediaType = this.init.mediaType
    try {
      await this.store.commit(this.digest, handle, info)
      this.resolveDone()
    } catch (err) {
      this.log.error({ err: String(err) }, 'could not store the verified blob')
      this.rejectDone(err instanceof Error ? err : new Error(String(err)))
    }
    // Not awaited: commit runs inside the hashing chain that maybeClose waits for.
    this.maybeClose().catch(() => {})
  }

  /**
   * The blob does not match its digest. Pieces from peers are compared with the origin's bytes;
   * a peer that sent a wrong piece is banned and the piece rewritten. If every piece came from
   * the origin, the origin itself is wrong: nothing is kept.
   */
  private async repair(): Promise<void> {
    const suspects = this.deliveredBy.map((by, i) => ({ by, i })).filter((x) => x.by !== 'origin')
    if (suspects.length === 0) {
      this.discarded = true
      await this.store.discardPartial(this.digest).catch(() => {})
      throw new ShoalError('DIGEST_INVALID', `content of ${this.digest.value} does not match its digest`, {
        status: 502,
      })
    }
    this.log.warn(
      { suspects: suspects.length },
      'blob does not match its digest; checking peer pieces against the origin',
    )
    let fixed = 0
    for (const { by, i } of suspects) {
      const [start, end] = this.bounds(i)
      const body = await this.originFetcher.fetch(start, end, this.controller.signal)
      const chunks: Buffer[] = []
      for await (const c of body) chunks.push(Buffer.from(c))
      const good = Buffer.concat(chunks)
      this.onBytes('origin', good.length)
      if (good.length !== end - start) {
        throw new ShoalError('SIZE_INVALID', `${this.originFetcher.name} sent ${good.length} bytes for piece ${i}`, {
          status: 502,
        })
      }
      const mine = await this.readPiece(i)
      if (!good.equals(Buffer.from(mine))) {
        if (by !== undefined && by !== 'disk') this.swarm?.ban(by, `piece ${i} did not match the origin's bytes`)
        await writeAll(this.handle as FileHandle, good, start)
        this.hashes[i] = createHash('sha256').update(good).digest()
        fixed++
      }
      this.deliveredBy[i] = 'origin'
    }
    this.hasher = createHash('sha256')
    for (let i = 0; i < this.pieceCount; i++) this.hasher.update(await this.readPiece(i))
    this.log.warn({ fixed }, 'repaired pieces from the origin')
    if (this.hasher.digest('hex') !== this.digest.hex) {
      this.discarded = true
      await this.store.discardPartial(this.digest).catch(() => {})
      throw new ShoalError('DIGEST_INVALID', `content of ${this.digest.value} does not match its digest`, {
        status: 502,
      })
    }
    this.hashedPieces = this.pieceCount
    await this.commit()
  }

  private fail(err: unknown): void {
    if (this.state !== 'running') return
    const e = err instanceof Error ? err : new Error(String(err))
    this.state = 'failed'
    this.error = e
    this.controller.abort(e)
    this.stopTimers()
    this.log.warn({ err: e.message, code: (e as ShoalError).code, pieces: this.have.size }, 'transfer failed')
    this.wake()
    this.rejectDone(e)
    if ((e as NodeJS.ErrnoException).code === 'ENOSPC' && !this.discarded) {
      // Give the space back: this blob cannot be stored now.
      this.discarded = true
      this.store.discardPartial(this.digest).catch(() => {})
    }
    this.checkpoint(true)
      .finally(() => this.maybeClose())
      .catch(() => {})
  }

  private stopTimers(): void {
    this.gate.forget(this)
    if (this.tick !== undefined) clearInterval(this.tick)
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer)
    this.swarm?.close()
  }

  // ---- readers ----

  private wake(): void {
    const waiters = [...this.waiters]
    this.waiters.clear()
    for (const w of waiters) w()
  }

  /** How far a reader may read now: the contiguous prefix, the last byte only after verification. */
  private readable(): number {
    if (this.state === 'complete') return this.size
    const prefix = Math.min(this.size, this.have.firstMissing(0) * this.pieceSize)
    return Math.min(prefix, Math.max(0, this.size - 1))
  }

  /**
   * Reads bytes as they land into buffers the caller gives (and may use again): `read(buf, pos)`
   * waits until the byte at `pos` is stored, then reads what is there from `pos`, up to
   * `buf.length` bytes, and returns how many (at least one). The caller holds a reader slot from
   * `acquire()` and closes the reader when done.
   */
  reader(signal: AbortSignal): RangeReader {
    // A reader that joined as the transfer finished may find the partial file closed (renamed
    // into the store): it reads the complete blob instead.
    let own: Promise<FileHandle> | undefined
    return {
      read: async (buf, pos) => {
        for (;;) {
          if (signal.aborted) throw abortError(signal)
          if (this.state === 'failed') throw this.error ?? new Error('transfer failed')
          const limit = this.readable()
          if (pos >= limit) {
            await this.waitForProgress(signal)
            continue
          }
          let handle = own === undefined ? this.handle : await own
          if (handle === undefined) {
            if (this.state !== 'complete') throw new Error('partial file not open')
            own = open(this.store.blobPath(this.digest), 'r')
            handle = await own
          }
          const { bytesRead } = await handle.read(buf, 0, Math.min(buf.length, limit - pos), pos)
          if (bytesRead === 0) throw new Error(`partial file ended early at ${pos}`)
          return bytesRead
        }
      },
      close: async () => {
        const fh = own
        own = undefined
        await (await fh?.catch(() => undefined))?.close()
      },
    }
  }

  private waitForProgress(signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters.delete(wake)
        reject(abortError(signal))
      }
      const wake = (): void => {
        signal.removeEventListener('abort', onAbort)
        resolve()
      }
      this.waiters.add(wake)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  acquire(): void {
    this.readers++
    if (this.idleTimer !== undefined) {
      clearTimeout(this.idleTimer)
      this.idleTimer = undefined
    }
  }

  /**
   * The last reader leaving a running transfer cancels it after `graceMs` (a client that retries
   * at once finds it still running); its pieces stay on disk for a later resume.
   */
  release(graceMs: number): void {
    this.readers--
    if (this.readers > 0) return
    if (this.state === 'running') {
      this.idleTimer = setTimeout(() => {
        if (this.readers === 0 && this.state === 'running') {
          this.log.info(
            { pieces: this.have.size, peerRequests: this.requestOutcomes },
            'no client left; cancelling transfer',
          )
          this.fail(new ShoalError('ABORTED', 'no client left'))
        }
      }, graceMs)
      this.idleTimer.unref()
    } else {
      this.maybeClose().catch(() => {})
    }
  }

  abort(reason: Error): void {
    this.fail(reason)
  }

  private async maybeClose(): Promise<void> {
    if (this.readers > 0 || this.state === 'running') return
    await this.hashing.catch(() => {})
    await this.checkpointing.catch(() => {})
    // A reader may have joined meanwhile: it closes the file when it leaves.
    if (this.readers > 0) return
    const handle = this.handle
    this.handle = undefined
    await handle?.close()
  }
}

/** Faster peers get more: throughput per request in flight; a peer not measured yet is tried. */
function pickPeer(peers: SwarmPeer[]): SwarmPeer {
  const score = (p: SwarmPeer): number => (p.throughput === 0 ? Number.MAX_VALUE : p.throughput) / (p.inflight + 1)
  let best = peers[0] as SwarmPeer
  for (const p of peers) if (score(p) > score(best)) best = p
  return best
}

/**
 * Buffers pieces from the origin are assembled in, used again once stored (a fresh one per piece
 * was new memory for every byte a node fetched; docs/BENCHMARKS.md, fourteenth pass).
 */
const originPieces = new BufferPool([...PIECE_SIZE_CLASSES], 16 * 1024 * 1024, BUFFER_POOL_IDLE_MS)

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}
