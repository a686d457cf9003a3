import type { PeerId, Stream } from '@libp2p/interface'
import { peerIdFromMultihash } from '@libp2p/peer-id'
import * as Multihash from 'multiformats/hashes/digest'
import { BUFFER_POOL_IDLE_MS, PIECE_SIZE_CLASSES, PIECE_SIZE_MAX } from '../constants.js'
import { ShoalError } from '../errors.js'
import type { Logger } from '../log.js'
import { type Digest, parseDigest } from '../oci/digest.js'
import { pieceSizeFor } from '../store/store.js'
import { Bitfield } from '../transfer/bitfield.js'
import type { SwarmAccess } from '../transfer/blobs.js'
import type { BlobSwarm, ClaimKind, LocalBlob, SwarmPeer } from '../transfer/contracts.js'
import { rendezvousScore } from '../transfer/rendezvous.js'
import { BufferPool } from '../util/buffer-pool.js'
import { type RateLimiter, Semaphore, UploadSlots } from '../util/limits.js'
import { RecentMap } from '../util/recent.js'
import { countMessage, FrameDecoder, FrameWriter, type MessageCounts, messageCounts, releasePiece } from './framing.js'
import type { SwarmNode } from './node.js'
import { OutgoingPieces } from './outgoing.js'
import type { Hello, Message, PeerAddrs } from './pb/pieces.js'

export const PIECES_PROTOCOL = '/shoal/pieces/2.0.0'
/** Every version of the piece protocol starts so. */
const PIECES_PROTOCOL_FAMILY = '/shoal/pieces/'

export interface ExchangeInit {
  /** Inbound piece streams per peer (one per blob both want). */
  maxStreamsPerPeer?: number
  /** Sessions kept per blob. */
  maxSessionsPerBlob?: number
  /** Pieces read from disk and being handed to streams at once, over all peers (memory bound). */
  maxServing?: number
  /**
   * Pieces on their way (from being read until their recipient announces them), over all peers:
   * `serveTargetMs`' worth of the upload rate delivered (see UploadSlots), within [min, max].
   */
  minInFlight?: number
  maxInFlight?: number
  serveTargetMs?: number
  /** Requests served at once on one session. */
  servePerSession?: number
  helloTimeoutMs?: number
  /** How long `ready` waits after the known peers answered, for simultaneous starters. */
  settleMs?: number
  readyTimeoutMs?: number
  banMs?: number
  /** How often a downloading node asks the DHT for more providers. */
  findProvidersIntervalMs?: number
  /**
   * With sessions to this many peers that hold some of a blob or download it, the DHT is not
   * asked for more (peer exchange still adds them).
   */
  enoughSessions?: number
  /**
   * A downloader announces itself in the DHT (provide) at once only while it has sessions with
   * fewer than this many such peers; better connected, it is found through them and announces the
   * blob once it holds it all, `provideDelayMs` (plus up to as much again) after completing.
   */
  provideBelowSessions?: number
  provideDelayMs?: number
  /** Sessions of a blob no transfer here needs are closed after this long without a message. */
  idleSessionsMs?: number | undefined
  /**
   * The piece protocol ID. Only tests set it: a node of another version (whose piece size rule
   * differs) is stood in for by one that speaks another ID.
   */
  protocol?: string
  /** Test-only fault: flip a byte of every piece served. */
  corruptServedPieces?: boolean
  /** Upload to peers, bytes/s (all peers together). */
  uploadLimiter?: RateLimiter | undefined
}

export interface ExchangeComponents {
  node: SwarmNode
  logger: Logger
  /** What this node holds of a blob (a running transfer or a complete blob). */
  local(digest: Digest): Promise<LocalBlob | undefined>
}

const D = {
  maxStreamsPerPeer: 256,
  maxSessionsPerBlob: 64,
  maxServing: 16,
  minInFlight: 4,
  maxInFlight: 32,
  serveTargetMs: 4_000,
  servePerSession: 4,
  // Includes dialling a peer not connected yet (TCP, Noise, yamux) on a possibly busy node.
  helloTimeoutMs: 15_000,
  settleMs: 300,
  readyTimeoutMs: 5_000,
  banMs: 10 * 60_000,
  findProvidersIntervalMs: 3_000,
  enoughSessions: 8,
  provideBelowSessions: 4,
  provideDelayMs: 10_000,
  idleSessionsMs: 60_000,
  protocol: PIECES_PROTOCOL,
  corruptServedPieces: false,
  uploadLimiter: undefined as RateLimiter | undefined,
}

/** Requests queued over all sessions, as a multiple of the pieces served at once; more are rejected busy. */
const QUEUE_FACTOR = 2

/** The delivered upload rate that sizes the sending slots is measured over this window. */
const SERVE_RATE_WINDOW_MS = 5_000

/** Requests one peer may have queued on one session; more are rejected. */
const MAX_QUEUED_REQUESTS = 32

/** Peers whose last piece bytes are remembered before old entries are dropped. */
const MAX_TRACKED_PEERS = 4096

/** A frame bigger than any control message: a piece on its way. */
const PIECE_DATA_HINT = 64 * 1024

/** A peer that said it is busy gets no request for this long. */
const BUSY_BACKOFF_MS = 1_000

/** A piece handed to the stream counts as on its way until its recipient announces it, this long at most. */
const SENT_CONFIRM_MS = 15_000

/** A peer that is sending a piece to another peer is not asked for that piece again for this long. */
const SENDING_BACKOFF_MS = 1_000

/** The provider search of a download backs off to this interval. */
const MAX_FIND_PROVIDERS_INTERVAL_MS = 60_000

/** How long a claim outlives its claimer's session (which may be replaced meanwhile). */
const ORPHANED_CLAIM_MS = 10_000

/** How long a claim that the piece is being fetched is not replaced by another peer's queued claim. */
const FETCHING_CLAIM_KEPT_MS = 10_000

/** Claims (and go-aheads, hand-offs) kept per blob at most: a peer cannot make them grow unbounded. */
const MAX_HEARD_CLAIMS = 1_000_000

/**
 * Claims from different peers heard within this long of each other race (a Claim can take 2.6 s
 * to cross a busy connection): of those, the one rendezvous ranks highest is kept (see onMessage).
 */
const CLAIM_RACE_MS = 3_000

/**
 * A peer whose session about a blob ended while it stays connected — one of two streams opened at
 * once was dropped, or the peer closed it — most likely still holds what it held: the transfer's
 * origin fetches wait this long for its session to come back.
 */
const REJOIN_GRACE_MS = 5_000

/** The same for a session the peer had not answered yet. */
const UNANSWERED_GRACE_MS = 1_500

/** After that long without a new session from such a peer, this node opens one itself. */
const REJOIN_DIAL_MS = 750

/** A peer whose sessions keep ending is dialled again at most this often. */
const REJOIN_REDIAL_MS = 10_000

/** How long a lost session is remembered (for the two bounds above). */
const LOST_KEPT_MS = 60_000

/** Peers named in one peer-exchange message (sent or taken in). */
const MAX_EXCHANGED_PEERS = 64

/** A peer that refused the piece protocol is not asked again for this long (it may be upgraded). */
const OTHER_VERSION_KEPT_MS = 10 * 60_000

/** Most bytes of served pieces' buffers kept while their recipients have not confirmed them. */
const SERVED_HELD_BYTES = 64 * 1024 * 1024
/**
 * Buffers pieces are read into to be served, used again once their recipient has them: fresh ones
 * for every piece meant new memory for every byte a node uploads (docs/BENCHMARKS.md, fourteenth
 * pass). As many kept while unused as may be held, until none was taken for a while.
 */
const servedPieces = new BufferPool([...PIECE_SIZE_CLASSES], SERVED_HELD_BYTES, BUFFER_POOL_IDLE_MS)

/**
 * Write buffer above which a session waits for drain: one piece of the smallest size (a session
 * hands a piece down, then waits for it to leave).
 */
const HIGH_WATER = 1024 * 1024

/** One stream with one peer about one blob. */
class Session implements SwarmPeer {
  readonly id: string
  downloading = false
  takesHandoffs = false
  inflight = 0
  throughput = 0
  busyUntil = 0
  remoteSize = 0
  /** Pieces this peer is sending to another peer (it said so), with until when not to ask it. */
  private readonly deferred = new Map<number, number>()
  private bits: Bitfield | undefined
  private rawBits: Uint8Array = new Uint8Array()
  private readonly hashes = new Map<number, Uint8Array>()
  private readonly pending = new Map<number, { resolve: (d: Uint8Array) => void; reject: (e: Error) => void }>()
  readonly writer: FrameWriter
  helloSeen = false
  /** We opened this stream (of two simultaneous opens, the lower peer ID's stream is kept). */
  outbound = false
  /** Our peer list for this blob went out on this session (once per session). */
  peersSent = false
  /** Requests from this peer waiting or being served, and those it cancelled meanwhile. */
  queued = 0
  readonly cancelled = new Set<number>()
  serveSlots: Semaphore | undefined
  private helloWaiters: (() => void)[] = []
  closed = false

  constructor(
    readonly peer: PeerId,
    readonly stream: Stream,
    readonly blob: BlobSessions,
    /** When piece bytes last came from each peer, over all its sessions (shared by the exchange). */
    private readonly pieceDataAt: Map<string, number>,
    /** The exchange's count of messages sent, by kind. */
    sent: MessageCounts,
  ) {
    this.id = peer.toString()
    this.writer = new FrameWriter(stream, HIGH_WATER, sent)
  }

  /** When piece bytes from this peer last arrived, for any blob: it is sending, if not to this session. */
  get lastDataAt(): number {
    return this.pieceDataAt.get(this.id) ?? 0
  }

  markData(now: number): void {
    this.pieceDataAt.set(this.id, now)
    if (this.pieceDataAt.size > MAX_TRACKED_PEERS) {
      for (const [id, at] of this.pieceDataAt) if (now - at > 60_000) this.pieceDataAt.delete(id)
    }
  }

  has(index: number): boolean {
    return this.bits?.has(index) ?? false
  }

  /** It answered, and holds some of the blob or is downloading it. */
  get useful(): boolean {
    if (!this.helloSeen || this.closed) return false
    if (this.downloading) return true
    if (this.bits !== undefined) return this.bits.size > 0
    return this.rawBits.some((b) => b !== 0)
  }

  hashOf(index: number): Uint8Array | undefined {
    return this.hashes.get(index)
  }

  sizeKnown(size: number): void {
    if (this.bits === undefined && size > 0) {
      this.bits = new Bitfield(Math.max(1, Math.ceil(size / pieceSizeFor(size))), this.rawBits)
    }
  }

  onHello(h: Hello): void {
    this.downloading = h.downloading
    this.takesHandoffs = h.takesHandoffs
    if (h.size > 0n) this.remoteSize = Number(h.size)
    this.rawBits = h.bitfield
    this.bits = undefined
    const size = this.blob.size || this.remoteSize
    this.sizeKnown(size)
    h.pieceHashes.forEach((hash, i) => {
      if (hash.byteLength === 32) this.hashes.set(i, hash)
    })
    this.helloSeen = true
    for (const w of this.helloWaiters) w()
    this.helloWaiters = []
  }

  waitHello(ms: number): Promise<boolean> {
    if (this.helloSeen) return Promise.resolve(true)
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(this.helloSeen), ms)
      this.helloWaiters.push(() => {
        clearTimeout(t)
        resolve(true)
      })
    })
  }

  onHave(index: number, hash: Uint8Array): void {
    if (this.bits === undefined) {
      const size = this.blob.size || this.remoteSize
      this.sizeKnown(size)
    }
    this.bits?.set(index)
    if (hash.byteLength === 32) this.hashes.set(index, hash)
  }

  request(index: number, signal: AbortSignal): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new ShoalError('ABORTED', 'session closed'))
    const started = Date.now()
    this.inflight++
    return new Promise<Uint8Array>((resolve, reject) => {
      const onAbort = (): void => {
        this.pending.delete(index)
        this.writer.send({ cancel: { index } }).catch(() => {})
        reject(signal.reason instanceof Error ? signal.reason : new ShoalError('ABORTED', 'request aborted'))
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.pending.set(index, {
        resolve: (d) => {
          signal.removeEventListener('abort', onAbort)
          const secs = Math.max(0.001, (Date.now() - started) / 1000)
          const rate = d.byteLength / secs
          this.throughput = this.throughput === 0 ? rate : this.throughput * 0.7 + rate * 0.3
          resolve(d)
        },
        reject: (e) => {
          signal.removeEventListener('abort', onAbort)
          reject(e)
        },
      })
      this.writer.send({ request: { index } }).catch((err: unknown) => {
        // The stream takes no more writes: the session is over (its read loop forgets it).
        this.close(err instanceof Error ? err : new Error(String(err)))
      })
    }).finally(() => {
      this.inflight--
    })
  }

  /** False when no request waits for the piece (it gave up or was cancelled): its bytes were wasted. */
  onPiece(index: number, data: Uint8Array): boolean {
    const p = this.pending.get(index)
    if (p === undefined) return false
    this.pending.delete(index)
    p.resolve(data)
    return true
  }

  deferredUntil(index: number): number {
    return this.deferred.get(index) ?? 0
  }

  onReject(index: number, busy: boolean, sending: boolean): void {
    const p = this.pending.get(index)
    if (p === undefined) return
    this.pending.delete(index)
    if (sending) {
      // It is sending this piece to another peer: that one will have it soon. Other pieces may
      // still be asked of this peer at once.
      const now = Date.now()
      if (this.deferred.size > 1024) for (const [i, until] of this.deferred) if (until <= now) this.deferred.delete(i)
      this.deferred.set(index, now + SENDING_BACKOFF_MS)
      p.reject(
        new ShoalError('TOOMANYREQUESTS', `peer is sending piece ${index} to another peer`, { detail: 'sending' }),
      )
      return
    }
    if (busy) {
      // It has the piece but is over its limits: leave it alone a moment, keep its bit.
      this.busyUntil = Date.now() + BUSY_BACKOFF_MS
      p.reject(new ShoalError('TOOMANYREQUESTS', `peer busy, piece ${index}`))
      return
    }
    this.bits?.clear(index)
    p.reject(new ShoalError('BLOB_UNKNOWN', `peer refused piece ${index}`))
  }

  close(err?: Error): void {
    if (this.closed) return
    this.closed = true
    this.blob.outgoing.dropPeer(this.id)
    for (const p of this.pending.values()) p.reject(err ?? new ShoalError('ABORTED', 'session closed'))
    this.pending.clear()
    for (const w of this.helloWaiters) w()
    this.helloWaiters = []
    if (err !== undefined) this.stream.abort(err)
    else this.stream.close().catch(() => this.stream.abort(new Error('close failed')))
  }
}

/** Every session about one blob, whether or not this node downloads it now. */
class BlobSessions {
  readonly sessions = new Map<string, Session>()
  size = 0
  /** Sessions being dialled. */
  opening = 0
  /** When a message last crossed a session of this blob (either way). */
  lastActivity = Date.now()
  /** Set while a transfer of this blob runs here. */
  swarm: TransferSwarm | undefined
  /** Claims heard from peers (kept also before a transfer starts here: a late joiner needs them). */
  readonly claims = new Map<number, HeardClaim>()
  /** Queued pieces their owner left to a peer that took them over: piece → that peer. */
  readonly yielded = new Map<number, string>()
  /** Queued pieces a peer handed to this node, the new rendezvous owner, not yet claimed here. */
  readonly handedHere = new Set<number>()
  /** Peers whose session ended while they stayed connected, with when (see REJOIN_GRACE_MS). */
  readonly lost = new Map<string, { peer: PeerId; at: number; until: number; dialledAt: number }>()
  /** Pieces this node is sending, or sent and not yet announced by their recipient. */
  readonly outgoing = new OutgoingPieces(SENT_CONFIRM_MS)
  idleTimer: NodeJS.Timeout | undefined

  constructor(readonly digest: Digest) {}
}

interface HeardClaim {
  peer: string
  /** The claimer, when this node has (had) a session with it: its connection tells whether it is gone. */
  claimer?: PeerId
  at: number
  queued: boolean
  takeover: boolean
  /** The claimer's last Claim said it fetches the piece now. */
  fetching?: boolean
  orphanedAt?: number
}

/**
 * A Claim of `kind`; with `yieldTo`, the claimer leaves the piece to that peer instead: a taker's
 * go-ahead, or with `handoff` a queued piece handed to its new rendezvous owner.
 */
function claimMessage(index: number, kind: ClaimKind, yieldTo = '', handoff = false): Message {
  return { claim: { index, queued: kind.queued === true, takeover: kind.takeover === true, yieldTo, handoff } }
}

/** The view one transfer has of the swarm for its blob. */
class TransferSwarm implements BlobSwarm {
  readonly selfId: string
  readonly ready: Promise<void>
  private readonly listeners: (() => void)[] = []
  /** Pieces this node claimed, each as it was last announced. */
  readonly ownClaims = new Map<number, ClaimKind>()
  private closed = false
  readonly controller = new AbortController()
  /** This node announced itself in the DHT as a holder of the blob during the transfer. */
  provided = false

  constructor(
    private readonly exchange: PieceExchange,
    readonly blob: BlobSessions,
    readonly local: LocalBlob,
  ) {
    this.selfId = exchange.selfId
    this.ready = exchange.discover(this)
  }

  peers(): SwarmPeer[] {
    return [...this.blob.sessions.values()].filter((s) => s.helloSeen && !s.closed)
  }

  pendingPeers(): number {
    let n = this.blob.opening
    for (const s of this.blob.sessions.values()) if (!s.helloSeen && !s.closed) n++
    return n
  }

  rejoining(): number {
    return this.exchange.rejoining(this.blob)
  }

  request(peer: SwarmPeer, index: number, signal: AbortSignal): Promise<Uint8Array> {
    const s = this.blob.sessions.get(peer.id)
    if (s === undefined) return Promise.reject(new ShoalError('ABORTED', 'peer gone'))
    return s.request(index, signal)
  }

  release(data: Uint8Array): void {
    releasePiece(data)
  }

  announceHave(index: number, hash: Uint8Array<ArrayBuffer>, from?: string): void {
    this.ownClaims.delete(index)
    this.broadcast((s) => ({ have: { index, hash, received: s.id === from } }))
  }

  announceClaim(index: number, kind: ClaimKind = {}): void {
    this.ownClaims.set(index, kind)
    this.broadcast(claimMessage(index, kind))
  }

  withdrawClaim(index: number): void {
    this.ownClaims.delete(index)
  }

  yieldClaim(index: number, taker: string): void {
    this.ownClaims.delete(index)
    this.broadcast(claimMessage(index, {}, taker))
  }

  yieldedTo(index: number): string | undefined {
    return this.blob.yielded.get(index)
  }

  handOffClaim(index: number, to: string): boolean {
    const peer = this.blob.sessions.get(to)
    if (peer === undefined || peer.closed || !peer.takesHandoffs) return false
    this.ownClaims.delete(index)
    // Held here as the new owner's queued claim at once, as the peers will: this node must not take
    // the piece back before that owner's own claim comes.
    if (this.blob.claims.size < MAX_HEARD_CLAIMS) {
      this.blob.claims.set(index, { peer: to, claimer: peer.peer, at: Date.now(), queued: true, takeover: false })
    }
    this.broadcast(claimMessage(index, { queued: true }, to, true))
    return true
  }

  takeHandOff(index: number): boolean {
    return this.blob.handedHere.delete(index)
  }

  claimOf(index: number): HeardClaim | undefined {
    const c = this.blob.claims.get(index)
    if (c === undefined) return undefined
    const s = this.blob.sessions.get(c.peer)
    if (s === undefined || s.closed) {
      // No connection to the claimer is left: it died or left (lab P3, daemons killed mid-herd),
      // and its pieces would otherwise wait out the grace below, nobody fetching them. Its claims go
      // at once.
      if (c.claimer !== undefined && !this.exchange.isConnected(c.claimer)) {
        this.blob.claims.delete(index)
        return undefined
      }
      // The claimer's session alone is gone: it may be replaced in a moment (a simultaneous open,
      // a busy connection) and the claimer is probably still fetching; give it a short grace.
      const now = Date.now()
      c.orphanedAt ??= now
      if (now - c.orphanedAt < ORPHANED_CLAIM_MS) return c
      this.blob.claims.delete(index)
      return undefined
    }
    c.orphanedAt = undefined
    return c
  }

  ban(peerId: string, reason: string): void {
    this.exchange.ban(peerId, reason)
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener)
  }

  changed(): void {
    for (const l of this.listeners) l()
  }

  /** To every open session: `msg`, or what `msg` gives for that session. */
  private broadcast(msg: Message | ((s: Session) => Message)): void {
    for (const s of this.blob.sessions.values()) {
      if (!s.closed) s.writer.send(typeof msg === 'function' ? msg(s) : msg).catch(() => {})
    }
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.controller.abort()
    this.listeners.length = 0
    this.exchange.detach(this)
  }
}

/**
 * The piece protocol: sessions with peers per blob, serving what this node has and fetching
 * what its transfers need. Implements the blob service's view of the swarm.
 */
export class PieceExchange implements SwarmAccess {
  private readonly opts: typeof D
  private readonly node: SwarmNode
  private readonly log: Logger
  private readonly localBlob: (digest: Digest) => Promise<LocalBlob | undefined>
  private readonly blobs = new Map<string, BlobSessions>()
  private readonly banned = new Map<string, number>()
  private readonly serving: UploadSlots
  private readonly reading: Semaphore
  /** Bytes of served pieces' buffers kept until their recipients confirm them (see `serve`). */
  private servedHeld = 0
  /** Sends handed to a stream and not finished, by `index/peer`; `shared`: another overlapped it. */
  private readonly handedSends = new Map<string, Set<{ shared: boolean }>>()
  private readonly maxFrame = PIECE_SIZE_MAX + 64 * 1024
  /** Peers that refused the piece protocol (another version), not dialled for it again for a while. */
  private readonly otherVersion = new RecentMap<true>(OTHER_VERSION_KEPT_MS, 4096)
  private started = false
  /** Counters for metrics and tests. */
  readonly stats = {
    piecesServed: 0,
    bytesServed: 0,
    peersBanned: 0,
    /** Piece bytes that arrived after their request had given up. */
    bytesUnwanted: 0,
    /** Requests answered "sending to another peer" (see the request handler). */
    requestsDeferred: 0,
    /** Requests answered the same because every slot was busy and another peer had the piece. */
    requestsRedirected: 0,
    /** Served pieces whose buffer went back to be used again (see `serve`). */
    servedBuffersReused: 0,
    /** Messages written to and read from piece sessions, by kind (shoal_swarm_messages_total). */
    messagesSent: messageCounts(),
    messagesReceived: messageCounts(),
  }
  private readonly pieceDataAt = new Map<string, number>()
  /** Blobs to announce in the DHT once their timer fires (see provideSoon). */
  private readonly provideTimers = new Map<string, NodeJS.Timeout>()
  /** Aborted when the exchange stops: ends announcements under way. */
  private readonly lifetime = new AbortController()
  /** Requests queued or being served, over all sessions. */
  private queuedTotal = 0
  /** Transfers running here (joined and not yet detached). */
  private transfers = 0

  /** Requests queued or being served, over all sessions. */
  get queued(): number {
    return this.queuedTotal
  }

  constructor(init: ExchangeInit, components: ExchangeComponents) {
    this.opts = { ...D, ...Object.fromEntries(Object.entries(init).filter(([, v]) => v !== undefined)) }
    this.node = components.node
    this.log = components.logger.child({ component: 'pieces' })
    this.localBlob = components.local
    this.reading = new Semaphore(this.opts.maxServing)
    this.serving = new UploadSlots({
      min: Math.min(this.opts.minInFlight, this.opts.maxInFlight),
      max: this.opts.maxInFlight,
      targetMs: this.opts.serveTargetMs,
      windowMs: SERVE_RATE_WINDOW_MS,
    })
  }

  get selfId(): string {
    return this.node.peerId.toString()
  }

  async start(): Promise<void> {
    await this.node.handle(
      this.opts.protocol,
      (stream, connection) => {
        this.inbound(stream, connection.remotePeer).catch((err: unknown) => {
          this.log.debug({ err: String(err) }, 'inbound piece stream failed')
          stream.abort(err instanceof Error ? err : new Error(String(err)))
        })
      },
      this.opts.maxStreamsPerPeer,
    )
    // The DHT's neighbour rounds keep out of the way of transfers (see SwarmNode).
    this.node.holdNeighbourRoundsWhile(() => this.transfers > 0)
    this.started = true
  }

  async stop(): Promise<void> {
    this.started = false
    this.lifetime.abort()
    for (const t of this.provideTimers.values()) clearTimeout(t)
    this.provideTimers.clear()
    for (const b of this.blobs.values()) {
      if (b.idleTimer !== undefined) clearTimeout(b.idleTimer)
      for (const s of b.sessions.values()) s.close()
    }
    this.blobs.clear()
  }

  /** Some connection to `peer` is open. */
  isConnected(peer: PeerId): boolean {
    return this.node.isConnected(peer)
  }

  isBanned(peer: string): boolean {
    const until = this.banned.get(peer)
    if (until === undefined) return false
    if (until < Date.now()) {
      this.banned.delete(peer)
      return false
    }
    return true
  }

  ban(peer: string, reason: string): void {
    if (this.isBanned(peer)) return
    this.banned.set(peer, Date.now() + this.opts.banMs)
    this.stats.peersBanned++
    this.log.warn({ peer, reason }, 'peer banned')
    for (const b of this.blobs.values()) {
      const s = b.sessions.get(peer)
      if (s !== undefined) {
        b.sessions.delete(peer)
        s.close(new ShoalError('DENIED', 'banned'))
      }
      b.swarm?.changed()
    }
  }

  private blobFor(digest: Digest): BlobSessions {
    let b = this.blobs.get(digest.hex)
    if (b === undefined) {
      b = new BlobSessions(digest)
      this.blobs.set(digest.hex, b)
    }
    if (b.idleTimer !== undefined) {
      clearTimeout(b.idleTimer)
      b.idleTimer = undefined
    }
    return b
  }

  join(digest: Digest, size: number, local: LocalBlob): BlobSwarm {
    const blob = this.blobFor(digest)
    blob.size = size
    for (const s of blob.sessions.values()) s.sizeKnown(size)
    // Go-aheads and hand-offs were for an earlier transfer of this blob (one that failed): a new one
    // asks again.
    blob.yielded.clear()
    blob.handedHere.clear()
    const swarm = new TransferSwarm(this, blob, local)
    blob.swarm = swarm
    this.transfers++
    // Tell peers already in session that we now download it.
    for (const s of blob.sessions.values()) this.sendHello(s, local).catch(() => {})
    return swarm
  }

  detach(swarm: TransferSwarm): void {
    const blob = swarm.blob
    this.transfers--
    if (blob.swarm === swarm) blob.swarm = undefined
    // Keep sessions a while: peers still fetch from us; drop them when idle.
    this.scheduleIdle(blob)
    this.localBlob(blob.digest)
      .then(async (local) => {
        if (local === undefined) return
        for (const s of blob.sessions.values()) this.sendHello(s, local).catch(() => {})
        // Held whole now (a piece table exists only then): announced later, after the rest of a
        // herd is likely done, spread so that a herd's announcements do not all come at once.
        if (!swarm.provided && !local.downloading && (await local.pieceTable()) !== undefined) {
          this.provideSoon(blob.digest, this.opts.provideDelayMs * (1 + Math.random()))
        }
      })
      .catch(() => {})
  }

  /**
   * Sessions of a blob no transfer here needs are closed once no message has crossed any of them
   * for `idleSessionsMs` and no request is being served — not while peers still fetch from us.
   */
  private scheduleIdle(blob: BlobSessions, delay = this.opts.idleSessionsMs): void {
    if (blob.idleTimer !== undefined) clearTimeout(blob.idleTimer)
    blob.idleTimer = setTimeout(() => {
      blob.idleTimer = undefined
      if (blob.swarm !== undefined) return
      const quiet = Date.now() - blob.lastActivity
      const serving = [...blob.sessions.values()].some((s) => s.queued > 0)
      if (serving || quiet < this.opts.idleSessionsMs) {
        this.scheduleIdle(blob, this.opts.idleSessionsMs - quiet + 100)
        return
      }
      for (const s of blob.sessions.values()) s.close()
      this.blobs.delete(blob.digest.hex)
    }, delay)
    blob.idleTimer.unref()
  }

  /** Opens sessions to connected peers and DHT providers; resolves when the first answers are in. */
  async discover(swarm: TransferSwarm): Promise<void> {
    const blob = swarm.blob
    const connected = this.node.connectedPeers().slice(0, this.opts.maxSessionsPerBlob)
    const opened = connected.map((p) => this.openSession(blob, p, swarm.local).catch(() => undefined))
    const settled =
      connected.length === 0
        ? Promise.resolve()
        : Promise.race([Promise.all(opened).then(() => sleepMs(this.opts.settleMs)), sleepMs(this.opts.readyTimeoutMs)])
    this.findMore(swarm, settled).catch((err: unknown) =>
      this.log.debug({ err: String(err) }, 'provider search failed'),
    )
    await settled
  }

  /**
   * Searches the DHT for more holders of the blob, backing off, while the blob has fewer than
   * `enoughSessions` sessions — counted once the sessions to connected peers have answered.
   */
  private async findMore(swarm: TransferSwarm, settled: Promise<void>): Promise<void> {
    const blob = swarm.blob
    const signal = swarm.controller.signal
    await settled
    let interval = this.opts.findProvidersIntervalMs
    // Bounded also for a transfer that never ends: 1 000 rounds are 50 min of skipped ones.
    for (let round = 0; round < 1_000 && !signal.aborted; round++) {
      // Every provide and every search costs DHT queries on this node and on the peers that
      // answer them: in a lab of ten nodes, whose sessions reach all nine others anyway, the DHT
      // (provides and a first search) was 17–21 % of the daemons' CPU while they pulled a 64 MiB
      // image. A downloader in session with a few peers of the blob's swarm is found through
      // them (peer exchange passes it on to whoever they meet): it announces the blob when it
      // holds it all (see detach). The first few of a herd, and a node the swarm has not reached,
      // announce themselves at once, so that a node connected to none of them finds the swarm.
      //
      // In a swarm smaller than the DHT's k, once every peer has answered a session about the
      // blob, neither helps: a search can only name those peers, and a newcomer meets this node
      // through whichever of them it reaches (peer exchange). A peer that connects ends this (a
      // newcomer, or a provider storing its record here), looked at again each first interval.
      // In a staggered ten-node rollout, the first few nodes' provides and searches (17 and 37
      // over five blobs, ~630 requests answered by the others) cost ~2 CPU-s and ~180 MiB of new
      // heap over the swarm.
      const whole = this.sessionsCoverSwarm(blob)
      const useful = this.usefulSessions(blob)
      if (!swarm.provided && useful < this.opts.provideBelowSessions && !whole) {
        swarm.provided = true
        this.provideSoon(blob.digest, 0)
      }
      // With enough sources, no search; sessions that end let it resume. Peers that neither hold
      // the blob nor download it do not count: a node of a large fleet is connected to dozens.
      // In a herd, a peer whose own client has not asked for the blob yet answers "nothing" and
      // says it downloads a moment later: right after the discovery the first nodes counted six or
      // seven of nine, and 30 of a ten-node herd's 50 transfers searched the DHT at once (an 8 MiB
      // image). A node with `provideBelowSessions` such peers has sources and is found through
      // them, as it is for announcing (the first few of a herd, fewer, still search at once and
      // pass what they find on by peer exchange): its first search waits one interval, counted again.
      if (useful >= this.opts.enoughSessions || (round === 0 && useful >= this.opts.provideBelowSessions)) {
        await sleepMs(interval, signal)
        continue
      }
      if (whole) {
        await sleepMs(this.opts.findProvidersIntervalMs, signal)
        continue
      }
      this.log.debug(
        {
          digest: blob.digest.value,
          useful,
          sessions: blob.sessions.size,
          answered: [...blob.sessions.values()].filter((s) => s.helloSeen && !s.closed).length,
          round,
        },
        'searching the DHT for providers',
      )
      const roundSignal = AbortSignal.any([signal, AbortSignal.timeout(this.opts.findProvidersIntervalMs * 2)])
      try {
        for await (const peer of this.node.findProviders(blob.digest.value, roundSignal)) {
          if (blob.sessions.size >= this.opts.maxSessionsPerBlob) break
          if (!blob.sessions.has(peer.toString())) this.openSession(blob, peer, swarm.local).catch(() => {})
        }
      } catch {
        // a round that found nothing or timed out
      }
      // Each round costs DHT queries on every downloader: back off (3 s, 6 s, … 60 s).
      await sleepMs(interval, signal)
      interval = Math.min(interval * 2, MAX_FIND_PROVIDERS_INTERVAL_MS)
    }
  }

  /** Every peer of a small swarm (see SwarmNode.smallSwarm) has answered a session about the blob. */
  private sessionsCoverSwarm(blob: BlobSessions): boolean {
    const peers = this.node.smallSwarm()
    if (peers === undefined) return false
    for (const p of peers) {
      const s = blob.sessions.get(p.toString())
      if (s === undefined || !s.helloSeen || s.closed) return false
    }
    return true
  }

  private usefulSessions(blob: BlobSessions): number {
    let n = 0
    for (const s of blob.sessions.values()) if (s.useful) n++
    return n
  }

  /**
   * Announces the blob in the DHT after `delayMs` (not awaited; failures only logged). A pending
   * announcement is replaced by a sooner one and dropped by `withdraw`.
   */
  private provideSoon(digest: Digest, delayMs: number): void {
    const pending = this.provideTimers.get(digest.hex)
    if (pending !== undefined) {
      if (delayMs > 0) return
      clearTimeout(pending)
      this.provideTimers.delete(digest.hex)
    }
    const provide = (): void => {
      this.provideTimers.delete(digest.hex)
      if (this.lifetime.signal.aborted) return
      this.node.provide(digest.value, this.lifetime.signal).catch((err: unknown) => {
        this.log.debug({ digest: digest.value, err: String(err) }, 'provide failed')
      })
    }
    if (delayMs === 0) {
      provide()
      return
    }
    const timer = setTimeout(provide, delayMs)
    timer.unref()
    this.provideTimers.set(digest.hex, timer)
  }

  private async openSession(
    blob: BlobSessions,
    peer: PeerId,
    local: LocalBlob | undefined,
  ): Promise<Session | undefined> {
    const id = peer.toString()
    if (this.isBanned(id) || blob.sessions.has(id) || id === this.selfId) return blob.sessions.get(id)
    // A node of another piece protocol version (a rolling upgrade) cuts blobs at other
    // boundaries: it is not a piece peer. Dialled once in a while, not for every blob, unless
    // identify says it speaks this version now (restarted upgraded).
    if (this.otherVersion.get(id) !== undefined) {
      if (!(await this.node.protocolsOf(peer)).includes(this.opts.protocol)) return undefined
      this.otherVersion.delete(id)
    }
    blob.opening++
    let stream: Stream
    try {
      stream = await this.node.dialProtocol(peer, this.opts.protocol, AbortSignal.timeout(this.opts.helloTimeoutMs))
    } catch (err) {
      // Only a peer that says it speaks another version: one whose exchange is not started yet
      // (or stopping, a restart) refuses every version, and is dialled again as before.
      if (err instanceof Error && err.name === 'UnsupportedProtocolError') {
        const other = (await this.node.protocolsOf(peer)).find(
          (p) => p.startsWith(PIECES_PROTOCOL_FAMILY) && p !== this.opts.protocol,
        )
        if (other !== undefined) {
          this.otherVersion.set(id, true)
          this.log.debug({ peer: id, protocol: other }, 'peer speaks another piece protocol version')
        }
      }
      throw err
    } finally {
      blob.opening--
      blob.swarm?.changed()
    }
    const existing = blob.sessions.get(id)
    if (existing !== undefined && !existing.closed) {
      // Both sides opened at once and the peer's stream got here first. The stream opened by the
      // lower peer ID is the one kept, on both sides.
      if (existing.outbound || this.selfId > id) {
        stream.close().catch(() => {})
        return existing
      }
      blob.sessions.delete(id)
      existing.close()
    }
    const session = new Session(peer, stream, blob, this.pieceDataAt, this.stats.messagesSent)
    session.outbound = true
    blob.sessions.set(id, session)
    this.readLoop(session).catch(() => {})
    try {
      await this.sendHello(session, local)
      await session.waitHello(this.opts.helloTimeoutMs)
      await this.sendPeers(session)
    } catch (err) {
      // The read loop ends with the aborted stream and forgets the session.
      session.close(err instanceof Error ? err : new Error(String(err)))
      throw err
    }
    blob.swarm?.changed()
    return session
  }

  private async sendHello(session: Session, given: LocalBlob | undefined): Promise<void> {
    // Whoever opens the session, the Hello says what this node holds: a seed opening one to a
    // peer it heard of (peer exchange) has no transfer to pass in, yet holds the whole blob. It
    // once said "nothing" there, and never corrected it (a seed sends no Have): the peer then
    // fetched the seed's pieces from the origin (the warm test's rare failure).
    const local = given ?? session.blob.swarm?.local ?? (await this.localBlob(session.blob.digest))
    const hello: Hello = {
      digest: session.blob.digest.value,
      size: BigInt(local?.size ?? session.blob.size),
      bitfield: local?.bitfield() ?? new Uint8Array(),
      downloading: session.blob.swarm?.local.downloading === true,
      pieceHashes: [],
      takesHandoffs: true,
    }
    if (local !== undefined && !local.downloading) {
      const table = await local.pieceTable()
      if (table !== undefined) hello.pieceHashes = table.map((h) => new Uint8Array(h))
    }
    await session.writer.send({ hello })
    // A newcomer must know which pieces we are already fetching from the origin.
    for (const [index, kind] of session.blob.swarm?.ownClaims ?? []) {
      await session.writer.send(claimMessage(index, kind))
    }
  }

  /**
   * Peer exchange: tells a new session's peer about the others in session about this blob, once.
   * With one bootstrap address, every downloader reaches the first node; this is how they meet.
   */
  private async sendPeers(session: Session): Promise<void> {
    if (session.peersSent || session.closed) return
    session.peersSent = true
    const others = [...session.blob.sessions.values()].filter(
      (s) => s !== session && s.helloSeen && !s.closed && !this.isBanned(s.id),
    )
    const peers: PeerAddrs[] = []
    for (const s of others.slice(0, MAX_EXCHANGED_PEERS)) {
      const addrs = await this.node.addressesOf(s.peer)
      if (addrs.length > 0) peers.push({ id: new Uint8Array(s.peer.toMultihash().bytes), addrs })
    }
    if (peers.length > 0) await session.writer.send({ peers: { peers } })
  }

  /** Opens sessions to the peers another peer told us about (bounded by maxSessionsPerBlob). */
  private async meetPeers(session: Session, peers: PeerAddrs[]): Promise<void> {
    const blob = session.blob
    for (const p of peers.slice(0, MAX_EXCHANGED_PEERS)) {
      if (blob.sessions.size >= this.opts.maxSessionsPerBlob) return
      let peer: PeerId
      try {
        peer = peerIdFromMultihash(Multihash.decode(p.id))
      } catch {
        continue
      }
      const id = peer.toString()
      if (id === this.selfId || blob.sessions.has(id) || this.isBanned(id)) continue
      if (!this.node.isConnected(peer)) await this.node.learnAddresses(peer, p.addrs)
      this.openSession(blob, peer, blob.swarm?.local).catch((err: unknown) => {
        this.log.debug({ peer: id, err: String(err) }, 'session with an exchanged peer failed')
      })
    }
  }

  private async inbound(stream: Stream, peer: PeerId): Promise<void> {
    const id = peer.toString()
    if (this.isBanned(id) || !this.started) {
      stream.abort(new ShoalError('DENIED', 'refused'))
      return
    }
    // The first frame names the blob.
    const decoder = new FrameDecoder(this.maxFrame)
    const it = stream[Symbol.asyncIterator]()
    let first: Message | undefined
    let rest: Message[] = []
    const deadline = setTimeout(() => stream.abort(new ShoalError('ABORTED', 'no hello')), this.opts.helloTimeoutMs)
    try {
      while (first === undefined) {
        const r = await it.next()
        if (r.done === true) return
        const msgs = decoder.push(r.value)
        first = msgs[0]
        rest = msgs.slice(1)
      }
    } finally {
      clearTimeout(deadline)
    }
    countMessage(this.stats.messagesReceived, first)
    const hello = first.hello
    if (hello === undefined) throw new ShoalError('UNSUPPORTED', 'first message must be hello')
    const digest = parseDigest(hello.digest)
    const blob = this.blobFor(digest)
    const old = blob.sessions.get(id)
    if (old !== undefined) {
      // Both sides opened at once: keep the stream opened by the lower peer ID (ours, if we are
      // lower and opened one; a session the peer opened earlier is stale and replaced).
      if (this.selfId < id && old.outbound && !old.closed) {
        stream.abort(new ShoalError('ABORTED', 'duplicate session'))
        return
      }
      blob.sessions.delete(id)
      old.close()
    }
    if (blob.sessions.size >= this.opts.maxSessionsPerBlob) {
      stream.abort(new ShoalError('TOOMANYREQUESTS', 'too many sessions for this blob'))
      return
    }
    const session = new Session(peer, stream, blob, this.pieceDataAt, this.stats.messagesSent)
    blob.sessions.set(id, session)
    if (blob.swarm === undefined) this.scheduleIdle(blob)
    try {
      const local = blob.swarm?.local ?? (await this.localBlob(digest))
      if (local !== undefined && blob.size === 0) blob.size = local.size
      session.onHello(hello)
      await this.sendHello(session, local)
      await this.sendPeers(session)
    } catch (err) {
      // Not left behind as a session that answers Hello but whose stream is gone (no read loop
      // runs yet to forget it).
      this.forget(session, err)
      throw err
    }
    for (const m of rest) this.onMessage(session, m)
    blob.swarm?.changed()
    await this.readLoop(session, decoder, it)
  }

  /** Closes a session and takes it out of its blob's list (if still there: it may be replaced). */
  private forget(session: Session, err?: unknown): void {
    session.close(err === undefined ? undefined : err instanceof Error ? err : new Error(String(err)))
    const blob = session.blob
    if (blob.sessions.get(session.id) === session) {
      blob.sessions.delete(session.id)
      this.sessionLost(blob, session)
    }
    blob.swarm?.changed()
  }

  private async readLoop(
    session: Session,
    decoder = new FrameDecoder(this.maxFrame),
    it: AsyncIterator<Uint8Array | import('uint8arraylist').Uint8ArrayList> = session.stream[Symbol.asyncIterator](),
  ): Promise<void> {
    try {
      for (;;) {
        const r = await it.next()
        if (r.done === true) break
        const msgs = decoder.push(r.value)
        // Piece bytes are flowing when a large frame is part-way in or a piece just completed.
        if (decoder.buffered > PIECE_DATA_HINT || msgs.some((m) => m.piece !== undefined)) session.markData(Date.now())
        for (const m of msgs) this.onMessage(session, m)
      }
    } catch (err) {
      this.log.debug({ peer: session.id, err: String(err) }, 'piece session ended')
    } finally {
      this.forget(session)
    }
  }

  /**
   * A session ended and none replaced it. If its peer is still connected, a stream of its own is
   * likely on the way (two opened at once, one dropped): for a moment the peer counts as
   * rejoining, and if no stream comes, this node opens one (while it downloads the blob).
   */
  private sessionLost(blob: BlobSessions, session: Session): void {
    if (!this.started || this.isBanned(session.id) || !this.node.isConnected(session.peer)) return
    const now = Date.now()
    for (const [id, l] of blob.lost) if (now - l.at > LOST_KEPT_MS) blob.lost.delete(id)
    const prev = blob.lost.get(session.id)
    if (prev === undefined && blob.lost.size >= this.opts.maxSessionsPerBlob) return
    // A peer that keeps losing its sessions does not keep the origin waiting: the grace runs from
    // the first loss of a series. A session the peer never answered was refused (too many
    // sessions) or lost a simultaneous open, whose winner is already on its way: a short grace,
    // and no dial.
    const grace = session.helloSeen ? REJOIN_GRACE_MS : UNANSWERED_GRACE_MS
    const until = prev !== undefined && now <= prev.until ? prev.until : now + grace
    const entry = { peer: session.peer, at: now, until, dialledAt: prev?.dialledAt ?? 0 }
    blob.lost.set(session.id, entry)
    if (!session.helloSeen || blob.swarm === undefined || now - entry.dialledAt < REJOIN_REDIAL_MS) return
    entry.dialledAt = now
    const t = setTimeout(() => {
      const swarm = blob.swarm
      if (swarm === undefined || !this.started || blob.sessions.has(session.id)) return
      if (!this.node.isConnected(session.peer)) return
      this.openSession(blob, session.peer, swarm.local).catch((err: unknown) => {
        this.log.debug({ peer: session.id, err: String(err) }, 'reopening a lost session failed')
      })
    }, REJOIN_DIAL_MS)
    t.unref()
  }

  /** Peers of a blob whose session was lost a moment ago and that have no answering session yet. */
  rejoining(blob: BlobSessions): number {
    if (blob.lost.size === 0) return 0
    const now = Date.now()
    let n = 0
    for (const [id, l] of blob.lost) {
      if (now > l.until) continue
      const s = blob.sessions.get(id)
      if (s?.helloSeen && !s.closed) continue
      if (this.node.isConnected(l.peer)) n++
    }
    return n
  }

  /**
   * `session`'s peer handed its queued piece `index` to `to`, the piece's rendezvous owner now. To
   * this node: it may claim the piece (once; see `takeHandOff`), the sender's claim is gone. To
   * anyone else: `to` holds it queued, unless a third peer is fetching it already.
   */
  private onHandOff(session: Session, index: number, to: string): void {
    const blob = session.blob
    const held = blob.claims.get(index)
    if (to === this.selfId) {
      if (blob.handedHere.size < MAX_HEARD_CLAIMS) blob.handedHere.add(index)
      if (held?.peer === session.id) blob.claims.delete(index)
    } else {
      const now = Date.now()
      const fetching =
        held !== undefined && !held.queued && held.peer !== session.id && now - held.at < FETCHING_CLAIM_KEPT_MS
      if (!fetching && blob.claims.size < MAX_HEARD_CLAIMS) {
        const claimer = blob.sessions.get(to)?.peer
        blob.claims.set(index, { peer: to, claimer, at: now, queued: true, takeover: false })
      }
    }
    blob.swarm?.changed()
  }

  private onMessage(session: Session, m: Message): void {
    countMessage(this.stats.messagesReceived, m)
    session.blob.lastActivity = Date.now()
    const swarm = session.blob.swarm
    if (m.hello !== undefined) {
      session.onHello(m.hello)
      swarm?.changed()
    }
    if (m.have !== undefined) {
      session.onHave(m.have.index, m.have.hash)
      session.blob.outgoing.done(m.have.index, session.id, m.have.received ? 'received' : 'have')
      // A piece this node holds changes nothing for its own download: no scheduling round (about
      // half the Haves of a herd; the transfer's own tick covers what time changes).
      if (swarm !== undefined && !swarm.local.has(m.have.index)) swarm.changed()
    }
    if (m.claim?.handoff === true && m.claim.yieldTo !== '') {
      this.onHandOff(session, m.claim.index, m.claim.yieldTo)
    } else if (m.claim !== undefined && m.claim.yieldTo !== '') {
      // The sender left its queued piece to a peer that took it over: from now on that peer's
      // claim (as a takeover, so that nobody takes it over again). The taker itself fetches it now.
      const blob = session.blob
      const { index, yieldTo } = m.claim
      if (blob.yielded.size < MAX_HEARD_CLAIMS) blob.yielded.set(index, yieldTo)
      if (yieldTo !== this.selfId && blob.claims.size < MAX_HEARD_CLAIMS) {
        const claimer = blob.sessions.get(yieldTo)?.peer
        blob.claims.set(index, { peer: yieldTo, claimer, at: Date.now(), queued: false, takeover: true })
      }
      swarm?.changed()
    } else if (m.claim !== undefined) {
      const blob = session.blob
      const { index, queued, takeover } = m.claim
      const now = Date.now()
      // As a transfer here sees it: the claim of a claimer that is gone no longer counts.
      const held = blob.swarm?.claimOf(index) ?? blob.claims.get(index)
      // A queued claim does not hide another peer's recent claim that it is fetching the piece (one
      // that took the piece over from a queue while this one was still being repeated).
      const hidden = queued && held !== undefined && !held.queued && held.peer !== session.id
      // Of queued claims that race (nodes that each think the piece theirs, none fetching it yet),
      // the one rendezvous ranks highest is kept, not the last heard: each claimant compares its
      // own claim with the one kept here, and all but the highest yield. With the last heard, a
      // piece three nodes claimed at once could be kept by two (lab P3: the survivors of a kill
      // took pieces from a new owner together, and some came twice). A claim that the piece is
      // being fetched always counts: that fetch is under way.
      const outranked =
        held !== undefined &&
        held.peer !== session.id &&
        queued &&
        held.queued &&
        !held.takeover &&
        !takeover &&
        now - held.at < CLAIM_RACE_MS &&
        rendezvousScore(held.peer, blob.digest.value, index) > rendezvousScore(session.id, blob.digest.value, index)
      if (!(hidden && now - held.at < FETCHING_CLAIM_KEPT_MS) && !outranked && blob.claims.size < MAX_HEARD_CLAIMS) {
        // A peer that took the piece over and now fetches it still holds it as a takeover: its
        // queue's owner, if it has not seen the takeover yet, must leave the piece to it.
        const tookOver = takeover || (!queued && held?.peer === session.id && held.takeover)
        blob.claims.set(index, {
          peer: session.id,
          claimer: session.peer,
          at: now,
          queued,
          takeover: tookOver,
          fetching: !queued && !takeover,
        })
        // The piece is a new owner's now (the taker it was left to died or left, lab P3): that
        // go-ahead is over. Kept, it made every later taker stand back (the go-ahead named
        // another) while the new owner yielded to them, and the piece waited out the claim's
        // 30 s.
        if (queued && !tookOver) blob.yielded.delete(index)
      }
      // A takeover of a piece this node queued: it answers (yields) on its next round.
      if (takeover && blob.swarm?.ownClaims.has(index) === true) swarm?.changed()
    }
    if (m.piece !== undefined && !session.onPiece(m.piece.index, m.piece.data)) {
      this.stats.bytesUnwanted += m.piece.data.byteLength
      releasePiece(m.piece.data)
    }
    if (m.reject !== undefined) {
      session.onReject(m.reject.index, m.reject.busy, m.reject.sending)
      swarm?.changed()
    }
    if (m.cancel !== undefined) session.cancelled.add(m.cancel.index)
    if (m.peers !== undefined) {
      this.meetPeers(session, m.peers.peers).catch((err: unknown) => {
        this.log.debug({ peer: session.id, err: String(err) }, 'peer exchange failed')
      })
    }
    if (m.request !== undefined) {
      const index = m.request.index
      session.cancelled.delete(index)
      // With every sending slot busy (the upload is the bottleneck), a piece already on its way
      // to another peer is not sent again at the same time: that peer will have it soon and can
      // pass it on. One holder's upload then carries each piece once while it is the only source
      // (BitTorrent's super-seeding), and a new piece spreads as a tree (1, 2, 4, … holders)
      // instead of as N parallel copies from its first holder. With slots to spare, a copy costs
      // nothing that another piece needed.
      const outgoing = session.blob.outgoing
      const pieceBytes = pieceSizeFor(session.blob.size || session.remoteSize)
      const limit = this.serving.limit(pieceBytes)
      const saturated = this.serving.inUse >= limit
      // Every slot busy and another peer in session has the piece: this node's upload is worth
      // more for the pieces only it has, so the requester is sent there (told the same).
      if (saturated && this.sendElsewhere(session, index, outgoing.toOthers(index, session.id))) return
      // Queues stay short: a request that would wait long here is better asked elsewhere now
      // than given up on later, when this node may already be sending it (wasted both ways).
      if (session.queued >= MAX_QUEUED_REQUESTS || this.queuedTotal >= limit * QUEUE_FACTOR) {
        session.writer.send({ reject: { index, busy: true, sending: false } }).catch(() => {})
        return
      }
      session.queued++
      this.queuedTotal++
      outgoing.start(index, session.id)
      this.serve(session, index)
        .then((sent) => {
          if (!sent) outgoing.done(index, session.id)
        })
        .catch((err: unknown) => {
          outgoing.done(index, session.id)
          this.log.debug({ peer: session.id, err: String(err) }, 'serving a piece failed')
        })
        .finally(() => {
          session.queued--
          this.queuedTotal--
        })
    }
  }

  /**
   * Tells the requester "sending to another peer" when the piece is on its way to another peer
   * (`onItsWay`) or another peer in session holds it; true when told.
   */
  private sendElsewhere(session: Session, index: number, onItsWay: boolean): boolean {
    if (onItsWay) this.stats.requestsDeferred++
    else if (this.heldElsewhere(session, index)) this.stats.requestsRedirected++
    else return false
    session.writer.send({ reject: { index, busy: true, sending: true } }).catch(() => {})
    return true
  }

  /** Another peer in session about the blob (not `requester`) has said it holds the piece. */
  private heldElsewhere(requester: Session, index: number): boolean {
    for (const s of requester.blob.sessions.values()) {
      if (s !== requester && s.helloSeen && !s.closed && s.has(index)) return true
    }
    return false
  }

  /** True when the piece went into the stream. */
  private async serve(session: Session, index: number): Promise<boolean> {
    const local = session.blob.swarm?.local ?? (await this.localBlob(session.blob.digest))
    if (local === undefined || !local.has(index) || this.isBanned(session.id)) {
      await session.writer.send({ reject: { index, busy: false, sending: false } })
      return false
    }
    session.serveSlots ??= new Semaphore(this.opts.servePerSession)
    await session.serveSlots.acquire()
    const queuedAt = Date.now()
    await this.serving.acquire(local.pieceSize)
    const startedAt = Date.now()
    let delivered = 0
    let reading = false
    let buffer: Uint8Array<ArrayBuffer> | undefined
    let handed = false
    let held = 0
    const sendKey = `${index}/${session.id}`
    const send = { shared: false }
    try {
      if (session.cancelled.delete(index) || session.closed) return false
      // The same choice as when the request came (see the request handler), made again now: the
      // wait for a slot can take seconds on a slow uplink, and meanwhile another peer may have
      // got the piece or this node may have started sending it elsewhere. With others still
      // waiting for a slot, it goes to a piece only this node can give.
      // Queued sends do not count here: of two queued for the same piece, neither has gone.
      if (
        this.serving.waiting > 0 &&
        this.sendElsewhere(session, index, session.blob.outgoing.sentToOthers(index, session.id))
      ) {
        return false
      }
      await this.reading.acquire()
      reading = true
      const pieceBytes = Math.min(local.pieceSize, local.size - index * local.pieceSize)
      buffer = servedPieces.take(pieceBytes)
      let data: Uint8Array | undefined = await local.readPiece(index, buffer)
      const bytes = data.byteLength
      await this.opts.uploadLimiter?.take(bytes)
      if (this.opts.corruptServedPieces && data.byteLength > 0) {
        data[0] = (data[0] ?? 0) ^ 0xff
      }
      // It may wait behind other pieces of this session: a cancel that comes meanwhile skips it.
      handed = true
      let sends = this.handedSends.get(sendKey)
      if (sends === undefined) {
        sends = new Set()
        this.handedSends.set(sendKey, sends)
      }
      sends.add(send)
      if (sends.size > 1) for (const other of sends) other.shared = true
      const sent = await session.writer.sendPiece(
        index,
        data,
        () => !session.cancelled.delete(index) && !session.closed,
      )
      data = undefined
      this.reading.release()
      reading = false
      if (!sent) {
        // Skipped, so never written to the stream: nothing else holds the buffer.
        servedPieces.give(buffer)
        buffer = undefined
        return false
      }
      // Kept while waiting for the Have, to be used again once every byte of it has reached the
      // recipient (so the stream has encrypted and sent it: nothing reads it any more); beyond
      // `SERVED_HELD_BYTES` it is left to the collector instead, so memory holds `maxServing`
      // pieces being read plus that much, whatever the slots.
      if (this.servedHeld + buffer.byteLength > SERVED_HELD_BYTES) {
        buffer = undefined
      } else {
        held = buffer.byteLength
        this.servedHeld += held
      }

      const handedAt = Date.now()
      session.blob.lastActivity = handedAt
      this.stats.piecesServed++
      this.stats.bytesServed += bytes
      // The slot is held until the recipient announces the piece: "sent" above only means handed
      // to the stream, which may buffer megabytes, so slots (and the rate that sizes them) follow
      // what arrived, not what was queued.
      const outcome = await session.blob.outgoing.sent(index, session.id)
      const confirmed = outcome !== false
      if (confirmed) delivered = bytes
      // Only the recipient's word that every byte came from here frees the buffer (its Have alone
      // may follow a copy from another peer while this one still waits in the stream), and only
      // if no other send of the piece to that peer overlapped this one: its word may be for that.
      if (outcome === 'received' && !send.shared && buffer !== undefined) {
        servedPieces.give(buffer)
        this.stats.servedBuffersReused++
      }
      this.log.debug(
        {
          peer: session.id,
          digest: session.blob.digest.value,
          index,
          waitMs: startedAt - queuedAt,
          sendMs: handedAt - startedAt,
          confirmMs: Date.now() - handedAt,
          confirmed: outcome,
          slots: this.serving.limit(bytes),
        },
        'piece served',
      )
      return true
    } finally {
      // Not handed to the stream (cancelled before, or the read failed): nothing else holds it.
      if (buffer !== undefined && !handed) servedPieces.give(buffer)
      this.servedHeld -= held
      const sends = this.handedSends.get(sendKey)
      if (sends?.delete(send) === true && sends.size === 0) this.handedSends.delete(sendKey)
      if (reading) this.reading.release()
      this.serving.release(delivered)
      session.serveSlots.release()
    }
  }

  /**
   * Announces blobs held from before a restart (the DHT's provider records live in memory), a few
   * at a time, in the background.
   */
  async provideAll(digests: AsyncIterable<string>, signal: AbortSignal): Promise<number> {
    let n = 0
    const inflight = new Set<Promise<void>>()
    for await (const digest of digests) {
      if (signal.aborted) break
      const p = this.node
        .provide(digest, signal)
        .catch((err: unknown) => this.log.debug({ digest, err: String(err) }, 'provide failed'))
        .finally(() => inflight.delete(p))
      inflight.add(p)
      n++
      if (inflight.size >= 4) await Promise.race(inflight)
    }
    await Promise.all(inflight)
    return n
  }

  /** The blob is gone from this node: stop announcing it. */
  withdraw(digest: string): void {
    const hex = parseDigest(digest).hex
    const pending = this.provideTimers.get(hex)
    if (pending !== undefined) clearTimeout(pending)
    this.provideTimers.delete(hex)
    this.node
      .cancelProvide(digest)
      .catch((err: unknown) => this.log.debug({ digest, err: String(err) }, 'withdraw failed'))
  }

  /** Asks connected peers for a blob's size (the origin could not be reached). */
  async findSize(digest: Digest, signal: AbortSignal): Promise<number | undefined> {
    const blob = this.blobFor(digest)
    if (blob.swarm === undefined) this.scheduleIdle(blob)
    const peers = this.node.connectedPeers().slice(0, this.opts.maxSessionsPerBlob)
    const sessions = await Promise.all(peers.map((p) => this.openSession(blob, p, undefined).catch(() => undefined)))
    if (signal.aborted) return undefined
    for (const s of sessions) if (s !== undefined && s.remoteSize > 0) return s.remoteSize
    return undefined
  }
}

function sleepMs(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms)
    t.unref()
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t)
        resolve()
      },
      { once: true },
    )
  })
}
