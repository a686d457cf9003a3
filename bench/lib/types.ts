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
  /** Setup failures and other problems that are not one server's fault. */
  errors: string[]
}
