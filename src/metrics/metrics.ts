import { Counter, Gauge, Registry } from 'prom-client'

/** The daemon's Prometheus metrics: one registry per daemon, no global state. */
export class Metrics {
  readonly registry = new Registry()
  readonly blobBytes: Counter<'source'>
  readonly requests: Counter<'route' | 'status'>
  readonly peersBanned: Counter
  readonly connectedPeers: Gauge
  readonly activeTransfers: Gauge
  /** The same figures as shoal_blob_bytes_total, for /status. */
  readonly bytesBySource: Record<'origin' | 'peer' | 'cache', number> = { origin: 0, peer: 0, cache: 0 }
  readonly gcRuns: Counter
  readonly gcDeleted: Counter
  readonly pieceBytes: Counter<'kind'>
  readonly swarmMessages: Counter<'direction' | 'kind'>
  readonly requestsDeclined: Counter<'reason'>
  /** The running totals counters were last brought up to (see `catchUp`), by counter and labels. */
  private readonly seen = new Map<object, Map<string, number>>()

  constructor() {
    this.blobBytes = new Counter({
      name: 'shoal_blob_bytes_total',
      help: 'Blob bytes this daemon obtained for its clients, by source (origin, peer, cache)',
      labelNames: ['source'],
      registers: [this.registry],
    })
    for (const source of ['origin', 'peer', 'cache']) this.blobBytes.inc({ source }, 0)
    this.requests = new Counter({
      name: 'shoal_http_requests_total',
      help: 'Requests to the /v2/ mirror by route and status',
      labelNames: ['route', 'status'],
      registers: [this.registry],
    })
    this.peersBanned = new Counter({
      name: 'shoal_peers_banned_total',
      help: 'Peers banned for sending bad pieces',
      registers: [this.registry],
    })
    this.connectedPeers = new Gauge({
      name: 'shoal_connected_peers',
      help: 'libp2p peers connected now',
      registers: [this.registry],
    })
    this.gcRuns = new Counter({
      name: 'shoal_gc_runs_total',
      help: 'Garbage collections run on request',
      registers: [this.registry],
    })
    this.gcDeleted = new Counter({
      name: 'shoal_gc_deleted_blobs_total',
      help: 'Blobs deleted by garbage collection',
      registers: [this.registry],
    })
    this.pieceBytes = new Counter({
      name: 'shoal_piece_bytes_total',
      help: 'Piece bytes exchanged with peers: served to them, or received after the request for them had given up (unwanted: wasted link and CPU)',
      labelNames: ['kind'],
      registers: [this.registry],
    })
    for (const kind of ['served', 'unwanted']) this.pieceBytes.inc({ kind }, 0)
    this.swarmMessages = new Counter({
      name: 'shoal_swarm_messages_total',
      help: 'Messages of the piece protocol written to and read from peers, by direction (sent, received) and kind (hello, have, claim, request, piece, cancel, reject, peers)',
      labelNames: ['direction', 'kind'],
      registers: [this.registry],
    })
    this.requestsDeclined = new Counter({
      name: 'shoal_piece_requests_declined_total',
      help: 'Piece requests from peers answered "ask the other peer" while every sending slot was busy: the piece was on its way to another peer (on_its_way), or another peer had it (held_elsewhere)',
      labelNames: ['reason'],
      registers: [this.registry],
    })
    for (const reason of ['on_its_way', 'held_elsewhere']) this.requestsDeclined.inc({ reason }, 0)
    this.activeTransfers = new Gauge({
      name: 'shoal_active_transfers',
      help: 'Blob transfers in progress',
      registers: [this.registry],
    })
  }

  /** Brings shoal_piece_bytes_total up to the exchange's running totals. */
  syncPieceBytes(totals: { served: number; unwanted: number }): void {
    for (const kind of ['served', 'unwanted'] as const) this.catchUp(this.pieceBytes, { kind }, totals[kind])
  }

  /** Brings shoal_swarm_messages_total up to the exchange's running counts (kind → messages). */
  syncSwarmMessages(sent: Record<string, number>, received: Record<string, number>): void {
    for (const [kind, n] of Object.entries(sent)) this.catchUp(this.swarmMessages, { direction: 'sent', kind }, n)
    for (const [kind, n] of Object.entries(received))
      this.catchUp(this.swarmMessages, { direction: 'received', kind }, n)
  }

  /** Brings shoal_piece_requests_declined_total up to the exchange's running totals. */
  syncRequestsDeclined(totals: { deferred: number; redirected: number }): void {
    this.catchUp(this.requestsDeclined, { reason: 'on_its_way' }, totals.deferred)
    this.catchUp(this.requestsDeclined, { reason: 'held_elsewhere' }, totals.redirected)
  }

  /**
   * Adds to `counter` what a running total grew by since the last call for the same labels (a
   * series seen for the first time is shown, at 0 if nothing was added yet).
   */
  private catchUp<L extends string>(counter: Counter<L>, labels: Partial<Record<L, string>>, total: number): void {
    let seen = this.seen.get(counter)
    if (seen === undefined) {
      seen = new Map()
      this.seen.set(counter, seen)
    }
    const key = JSON.stringify(labels)
    const before = seen.get(key)
    const delta = total - (before ?? 0)
    if (delta > 0 || before === undefined) counter.inc(labels, Math.max(0, delta))
    seen.set(key, total)
  }

  addBlobBytes(source: 'origin' | 'peer' | 'cache', bytes: number): void {
    this.blobBytes.inc({ source }, bytes)
    this.bytesBySource[source] += bytes
  }
}
