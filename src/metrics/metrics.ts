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
  private readonly pieceSeen = { served: 0, unwanted: 0 }

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
    this.activeTransfers = new Gauge({
      name: 'shoal_active_transfers',
      help: 'Blob transfers in progress',
      registers: [this.registry],
    })
  }

  /** Brings shoal_piece_bytes_total up to the exchange's running totals. */
  syncPieceBytes(totals: { served: number; unwanted: number }): void {
    for (const kind of ['served', 'unwanted'] as const) {
      const delta = totals[kind] - this.pieceSeen[kind]
      if (delta > 0) this.pieceBytes.inc({ kind }, delta)
      this.pieceSeen[kind] = totals[kind]
    }
  }

  addBlobBytes(source: 'origin' | 'peer' | 'cache', bytes: number): void {
    this.blobBytes.inc({ source }, bytes)
    this.bytesBySource[source] += bytes
  }
}
