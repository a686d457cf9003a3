/**
 * How a send ended: the recipient announced the piece (`'have'`), said every byte of it came from
 * this node (`'received'`), or neither came within the bound or the peer went (`false`).
 */
export type SendOutcome = 'have' | 'received' | false

/**
 * Pieces of one blob this node is sending, or has sent but not yet seen announced by their
 * recipient. A piece "sent" is only in the kernel's socket buffer: on a slow link it reaches the
 * recipient seconds later, and until its Have comes back nobody else can pass it on. For that long
 * (at most `confirmMs`) another request for it is answered "sending to another peer".
 */
export class OutgoingPieces {
  /** Piece → recipient peer → until when it counts (Infinity while queued or being sent). */
  private readonly byPiece = new Map<number, Map<string, number>>()
  /** Sends waiting for their recipient's Have, by `index/peer`. */
  private readonly waiting = new Map<string, (outcome: SendOutcome) => void>()

  constructor(private readonly confirmMs: number) {}

  get size(): number {
    return this.byPiece.size
  }

  /** Queued or being sent to `peer`. */
  start(index: number, peer: string): void {
    let m = this.byPiece.get(index)
    if (m === undefined) {
      m = new Map()
      this.byPiece.set(index, m)
    }
    m.set(peer, Number.POSITIVE_INFINITY)
  }

  /**
   * Handed to the stream: counts until `peer` announces the piece, `confirmMs` at most. Resolves
   * then with how it ended (`SendOutcome`).
   */
  sent(index: number, peer: string, now = Date.now()): Promise<SendOutcome> {
    const m = this.byPiece.get(index)
    if (m?.has(peer) !== true) return Promise.resolve(false)
    m.set(peer, now + this.confirmMs)
    if (this.byPiece.size > 4096) this.prune(now)
    const key = `${index}/${peer}`
    this.waiting.get(key)?.(false)
    return new Promise<SendOutcome>((resolve) => {
      const timer = setTimeout(() => finish(false), this.confirmMs)
      timer.unref()
      const finish = (outcome: SendOutcome): void => {
        clearTimeout(timer)
        if (this.waiting.get(key) === finish) this.waiting.delete(key)
        resolve(outcome)
      }
      this.waiting.set(key, finish)
    })
  }

  /** `peer` announced the piece (`outcome`), or the send was skipped or failed (`false`). */
  done(index: number, peer: string, outcome: SendOutcome = false): void {
    this.waiting.get(`${index}/${peer}`)?.(outcome)
    const m = this.byPiece.get(index)
    if (m === undefined) return
    m.delete(peer)
    if (m.size === 0) this.byPiece.delete(index)
  }

  /** `peer`'s session closed: nothing more will be confirmed by it. */
  dropPeer(peer: string): void {
    for (const [index, m] of this.byPiece) {
      if (!m.has(peer)) continue
      this.done(index, peer)
    }
  }

  /**
   * The piece was handed to the stream for a peer other than `peer` and is not announced yet
   * (queued sends are not counted: of two queued for the same piece, neither has gone).
   */
  sentToOthers(index: number, peer: string, now = Date.now()): boolean {
    const m = this.byPiece.get(index)
    if (m === undefined) return false
    for (const [p, until] of m) if (p !== peer && until > now && until !== Number.POSITIVE_INFINITY) return true
    return false
  }

  /** The piece is on its way to a peer other than `peer`. */
  toOthers(index: number, peer: string, now = Date.now()): boolean {
    const m = this.byPiece.get(index)
    if (m === undefined) return false
    let others = false
    for (const [p, until] of m) {
      if (until <= now) m.delete(p)
      else if (p !== peer) others = true
    }
    if (m.size === 0) this.byPiece.delete(index)
    return others
  }

  private prune(now: number): void {
    for (const [index, m] of this.byPiece) {
      for (const [p, until] of m) if (until <= now) m.delete(p)
      if (m.size === 0) this.byPiece.delete(index)
    }
  }
}
