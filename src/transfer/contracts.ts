/**
 * What the transfer engine needs from the swarm, and what the swarm needs from a local blob.
 * The swarm (src/swarm) implements `BlobSwarm`; transfers and the store implement `LocalBlob`.
 */

/** A blob this node can serve pieces of (complete in the store, or a transfer in progress). */
export interface LocalBlob {
  readonly size: number
  readonly pieceSize: number
  readonly pieceCount: number
  /** This node takes part in the cold-start rendezvous for the blob. */
  readonly downloading: boolean
  has(index: number): boolean
  /** The bitfield as sent on the wire. */
  bitfield(): Uint8Array<ArrayBuffer>
  /** sha256 of a piece this node has, if it knows it without reading (may be undefined). */
  hashOf(index: number): Uint8Array | undefined
  /** Every piece hash, when the blob is complete and verified. */
  pieceTable(): Promise<Uint8Array[] | undefined>
  /**
   * Piece `index`. With `into` (at least the piece's length) the bytes are read into it and the
   * result is a view of it; otherwise into a new buffer.
   */
  readPiece(index: number, into?: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>>
}

export interface SwarmPeer {
  readonly id: string
  readonly downloading: boolean
  /** The peer takes queued pieces handed to it (see `BlobSwarm.handOffClaim`). */
  readonly takesHandoffs?: boolean
  has(index: number): boolean
  /** The piece hash this peer announced (Have, or its piece table). */
  hashOf(index: number): Uint8Array | undefined
  /** Requests to this peer in flight now. */
  readonly inflight: number
  /** Recent bytes/s from this peer (0 when unknown). */
  readonly throughput: number
  /** Until then (epoch ms) the peer said it is too busy for more requests. */
  readonly busyUntil: number
  /** Until then (epoch ms) the peer is not asked for this piece: it was sending it to another peer. */
  deferredUntil(index: number): number
  /** When (epoch ms) piece bytes from this peer last arrived (0: never). */
  readonly lastDataAt: number
}

/**
 * What a claim says beyond "this node fetches the piece from the origin". Neither: it is fetching
 * it (or is a node that predates these). `queued`: not yet, the piece waits for one of the node's
 * origin slots; a node with no origin pieces of its own left may take it over. `takeover`: the
 * node took it over from another's queue; the queued claimer leaves it.
 */
export interface ClaimKind {
  queued?: boolean
  takeover?: boolean
}

/** The peers interested in one blob, as one transfer sees them. */
export interface BlobSwarm {
  readonly selfId: string
  /** Settles once the peers known now have said what they have (bounded wait). */
  readonly ready: Promise<void>
  peers(): SwarmPeer[]
  /** Sessions being opened, or opened but whose Hello has not come yet: they may hold the blob. */
  pendingPeers(): number
  /**
   * Peers whose session ended a moment ago while they stayed connected (a replaced stream): they
   * likely still hold what they held, and their session is coming back (bounded).
   */
  rejoining(): number
  /** Piece `index` from `peer`; rejects on refusal, timeout or a closed stream. */
  request(peer: SwarmPeer, index: number, signal: AbortSignal): Promise<Uint8Array>
  /**
   * Data `request` returned is read no more (stored, or thrown away): its buffer may be used
   * again. Optional for the caller (a buffer not given back is collected); never early.
   */
  release(data: Uint8Array): void
  /** This node has piece `index` now; `from`: the peer it came from, if it came from one. */
  announceHave(index: number, hash: Uint8Array<ArrayBuffer>, from?: string): void
  /** This node fetches piece `index` from the origin (see `ClaimKind`). */
  announceClaim(index: number, kind?: ClaimKind): void
  /** This node no longer claims piece `index` (another took it over): newcomers are not told of it. */
  withdrawClaim?(index: number): void
  /**
   * This node leaves its queued piece `index` to `taker`, whose takeover it heard: the claim is
   * withdrawn and every peer is told, the taker's go-ahead.
   */
  yieldClaim?(index: number, taker: string): void
  /** The peer a queued piece's owner left it to (see `yieldClaim`), this node included. */
  yieldedTo?(index: number): string | undefined
  /**
   * This node hands its queued piece `index` to `to`, the piece's rendezvous owner now (a peer
   * that began downloading after this node claimed it): the claim is withdrawn, every peer is told,
   * and `to` claims it. False, and nothing happens, when `to` does not take hand-offs or its session
   * is gone: the piece stays this node's.
   */
  handOffClaim?(index: number, to: string): boolean
  /** True (once) when a peer handed piece `index` to this node: it may claim it as its own. */
  takeHandOff?(index: number): boolean
  /** The latest claim another peer made on a piece, with when it was heard. */
  /**
   * The claim held for piece `index`. `fetching`: its last Claim said the claimer fetches it now
   * (a taker that started the piece still counts as a takeover).
   */
  claimOf(index: number): ({ peer: string; at: number; fetching?: boolean } & ClaimKind) | undefined
  ban(peerId: string, reason: string): void
  /** Called when anything changed that may let the transfer make progress. */
  onChange(listener: () => void): void
  close(): void
}
