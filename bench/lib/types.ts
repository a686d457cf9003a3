export interface MemResult {
  /** VmHWM read at the end of the phase, while the process was still alive. */
  hwmMiB: number
  /** Largest VmRSS seen by sampling every 100 ms during the phase. */
  maxSampledRssMiB: number
  /** VmRSS when sampling started: the server was ready (answered GET /v2/) and idle. */
  startRssMiB: number
  samples: number
}

export interface HitRun {
  mibPerSec: number
  ms: number
  ttfbMs: number
  source: string | undefined
}

export interface HitSide {
  error?: string
  /** The unmeasured first pull (for Shoal: the cache fill from the origin), hashed. */
  warm?: HitRun & { digestOk: boolean }
  runs: HitRun[]
  medianMiBps?: number
  mem?: MemResult
  /** Largest VmRSS sampled during the first pull (for Shoal: the fill from the origin), MiB. */
  warmMaxRssMiB?: number
  /** Largest VmRSS sampled during the measured runs only, MiB. */
  runsMaxRssMiB?: number
}

export interface HitResult {
  blobBytes: number
  shoal: HitSide
  registry: HitSide
}

export interface ColdClient {
  ok: boolean
  error?: string
  ms?: number
  ttfbMs?: number
  source?: string | undefined
  digestOk?: boolean
}

export interface ColdSide {
  error?: string
  clients: ColdClient[]
  /** All clients done (or failed), from the moment the first request was sent. */
  wallMs?: number
  /** Origin → mirror bytes when the last client finished. */
  originBytesAtEnd?: number
  /** Origin → mirror bytes once the link had been quiet for 1.5 s (background fetches included). */
  originBytes?: number
  settled?: boolean
  originConnections?: number
  /** originBytes / blob size. */
  originRatio?: number
  /** From the first request until the last byte moved on the origin link. */
  originBusyMs?: number
  sources: Record<string, number>
  mem?: MemResult
}

export interface ColdResult {
  blobBytes: number
  clients: number
  /** Whether the clients sha256'd the bodies (and checked them) or only counted bytes. */
  hashed: boolean
  shoal: ColdSide
  registry: ColdSide
}

export interface BenchResult {
  startedAt: string
  durationS: number
  options: Record<string, unknown>
  env: Record<string, string>
  hit?: HitResult
  cold?: ColdResult
  p2p?: P2pResult
  /** Setup failures and other problems that are not one server's fault. */
  errors: string[]
}

/** A line on the stdin of the spawned pull client (pull-client.ts). */
export interface PullCommand {
  url: string
  expectBytes: number
  hash: boolean
  timeoutMs: number
}

/** Blob bytes a daemon obtained for its clients, by source (shoal_blob_bytes_total{source}). */
export interface BlobBytes {
  origin: number
  peer: number
  cache: number
}

/** One measured pull of the p2p phase. */
export interface P2pPull {
  /** Bytes / (request sent → last body byte). */
  mibPerSec: number
  ms: number
  ttfbMs: number
  /** Bytes / (first body byte → last body byte): the rate once data flows. */
  bodyMiBps: number
  /** CPU seconds (utime + stime) of the process that received the bytes: daemon B for p2p and
   * cache hit, the undici client process for raw HTTP. */
  receiverCpuS?: number
  /** CPU seconds of the sender: daemon A for p2p, the node:http server for raw HTTP. */
  senderCpuS?: number
  /** CPU seconds of the undici client process that pulled from daemon B (p2p and cache hit). */
  clientCpuS?: number
  source?: string
  /** Change of B's shoal_blob_bytes_total over the pull. */
  blobBytes?: BlobBytes
  /** Bytes the origin sent to B during the pull (--p2p-origin live: counted by the proxy). */
  originLinkBytes?: number
  /** B's VmHWM at the end of its run, MiB (p2p pulls only). */
  receiverHwmMiB?: number
}

export interface CpuProfileSummary {
  name: string
  file: string
  /** Sampled time that was not idle, s. */
  busyS: number
  /** Top functions by self time: "share% name (where)". */
  top: string[]
  /** Self time by package / area: "share% area". */
  areas: string[]
  /** Time with each package / Shoal area anywhere on the stack (callers included). */
  inclusiveAreas: string[]
}

export interface P2pVariant {
  /** The Node binary that ran both daemons, the raw-HTTP server and the client. */
  nodeBin: string
  node: string
  error?: string
  /** Daemon A's fill from the origin (hashed, unmeasured). */
  fill?: P2pPull & { digestOk: boolean }
  p2p: P2pPull[]
  http: P2pPull[]
  /** B pulling from its own cache after the p2p pull. */
  cacheHit: P2pPull[]
  /** A hashed pull from B after its first p2p pull matched the digest. */
  verified?: boolean
  /** A's VmHWM at the end, MiB. */
  senderHwmMiB?: number
  /** Problems that did not stop the phase (a failed cache hit, a metrics mismatch, …). */
  problems: string[]
  profiles: CpuProfileSummary[]
}

export interface P2pResult {
  blobBytes: number
  runs: number
  /** B's upstream during the pull: see --p2p-origin. */
  originMode: 'dead' | 'down' | 'live'
  variants: P2pVariant[]
}
