/** What the lab measures and writes to its JSON file. */

import type { LeafQdisc, QueueCounts } from './netns.js'

export type Scenario = 'P1' | 'P2' | 'P3' | 'P4' | 'size-sweep' | 'n-sweep'
export type System = 'shoal' | 'direct' | 'proxy'
export type Baseline = Exclude<System, 'shoal'>

export const SCENARIOS: Scenario[] = ['P1', 'P2', 'P3', 'P4', 'size-sweep', 'n-sweep']

export const SYSTEM_LABEL: Record<System, string> = {
  shoal: 'Shoal',
  direct: '(a) direct from origin',
  proxy: '(b) docker-registry proxy per node',
}

export interface LabOptions {
  scenarios: Scenario[]
  /** Runs of each measured case; the summary shows the median. */
  runs: number
  /** Runs of each point of a sweep. */
  sweepRuns: number
  nodes: number
  sizeMiB: number
  layers: number
  originMbit: number
  nodeMbit: number
  /** The queue under every link's rate limit (see bench/lab/netns.ts). */
  qdisc: LeafQdisc
  /** Baselines run beside Shoal in P1 and P2 (and in the sweeps, unless sweepBaselines says otherwise). */
  baselines: Baseline[]
  /** Baselines run beside Shoal at each point of the sweeps (default: baselines). */
  sweepBaselines?: Baseline[]
  staggerMs: number
  churnKill: number
  /** Mean client progress (0…1) at which the churn daemons are killed. */
  churnAt: number
  sweepSizesMiB: number[]
  sweepNodes: number[]
  /** Where results (JSON, SVG) are written. */
  outDir: string
  /** Keep the work dir (logs, data dirs) under /tmp. */
  keep: boolean
  shoalLogLevel: string
  /** Daemon k>1 bootstraps to node 1 only ('one'), or to every other node ('all'). */
  bootstrap: 'one' | 'all'
  /**
   * skopeo's destination: 'oci' (an OCI layout: layers copied in parallel, as containerd, dockerd
   * and podman pull them) or 'dir' (skopeo 1.9 copies one layer after the other).
   */
  clientLayout: 'oci' | 'dir'
  /**
   * Before each Shoal case every daemon serves one pull of a small image of its own (a herd of
   * WARMUP_MIB), and the case starts once the daemons' CPU has gone quiet: daemons that have worked
   * before, as on a fleet, instead of processes started for the case (see bench/lab/case.ts).
   */
  warmDaemons: boolean
  sampleMs: number
  /** Hard bound on the whole lab. */
  maxMinutes: number
  /** Progress lines go here (default: stderr). */
  log?: (line: string) => void
  /** Aborts the lab (teardown still runs). */
  signal?: AbortSignal
  /** Called with the lab once it exists (main uses it for a forced, synchronous kill). */
  onLab?: (lab: { killAllSync(): void }) => void
}

/** A daemon's piece-protocol messages by kind, and requests it declined, from its /metrics. */
export interface SwarmMessages {
  sent: Record<string, number>
  received: Record<string, number>
  /** Requests answered "ask the other peer": on_its_way, held_elsewhere. */
  declined: Record<string, number>
}

export interface BytesBySource {
  origin: number
  peer: number
  cache: number
  /** Piece bytes served to peers. */
  served?: number
  /** Piece bytes received after their request had given up (wasted). */
  unwanted?: number
}

export interface DaemonUsage {
  /** The server process's CPU time over its whole life (start-up and swarm forming included). */
  cpuSeconds: number | undefined
  /** CPU time from the run's t0 (the first pull starting) to the end of the pulls. */
  pullCpuSeconds?: number | undefined
  /** Of `pullCpuSeconds`, the kernel's (system time). */
  pullSysSeconds?: number | undefined
  /** Minor page faults in the same span × 4 KiB (a fault on a transparent huge page maps up to 2 MiB and counts once). */
  pullFaultMiB?: number | undefined
  peakRssMiB: number | undefined
}

export interface NodeResult {
  node: number
  role: 'pull' | 'seed' | 'killed'
  /** ms from the run's t0 (the first client start). */
  startMs: number
  endMs: number | undefined
  /** endMs − startMs for a finished pull. */
  durationMs: number | undefined
  exit: string
  digestsOk: boolean | undefined
  ok: boolean
  error?: string
  bytesBySource?: BytesBySource
  /** Shoal only: the daemon's message counts at the end of the run (since it started). */
  swarmMessages?: SwarmMessages
  /** The node's Shoal daemon or docker-registry proxy. */
  server?: DaemonUsage
  /** Bytes the node's link received / sent during the run (origin + peers), from the switch port. */
  netRx?: number
  netTx?: number
  /**
   * The node's link queues during the run, in packets (GSO super-packets): sent, and dropped when
   * full — down: the switch port's towards the node; up: the node's own.
   */
  queues?: { down: QueueCounts; up: QueueCounts }
  /** Peers connected at the start (Shoal). */
  peersAtStart?: number
  /** [ms since t0, fraction of the image in the client's output dir]. */
  progress: [number, number][]
  /** [ms since t0, bytes the node's link received, sent since the first sample]. */
  linkSeries?: [number, number, number][]
}

export interface RunResult {
  scenario: Scenario
  system: System
  run: number
  nodes: number
  pullers: number
  imageBytes: number
  originMbit: number
  nodeMbit: number
  /** Link-bound time of one pull, s: max(S/R_origin, S/R_node) (P4: S/R_node). */
  tStarS: number
  /** Bytes the origin's interface sent during the run (eth0 tx, until the link was quiet). */
  originBytes: number
  originRatio: number
  /** Blob bytes the Shoal daemons fetched from the origin (their metrics), if Shoal. */
  originBlobBytes?: number
  slowestMs: number | undefined
  slowestRatio: number | undefined
  medianMs: number | undefined
  wallMs: number | undefined
  killedAtMs?: number
  ok: boolean
  errors: string[]
  nodeResults: NodeResult[]
  /** [ms since t0, origin bytes sent so far]. */
  originSeries: [number, number][]
  startedAt: string
  /** The whole machine's CPU (/proc/stat) from t0 to the last pull's end. */
  machineCpu?: MachineShares
}

/** Shares of all cores' time between two readings of /proc/stat, percent (irq as kernel, iowait as idle). */
export interface MachineShares {
  busyPct: number
  userPct: number
  systemPct: number
  softirqPct: number
  stealPct: number
}

export interface CaseSummary {
  scenario: Scenario
  system: System
  nodes: number
  imageBytes: number
  tStarS: number
  runs: number
  okRuns: number
  originRatio: number | undefined
  slowestRatio: number | undefined
  medianRatio: number | undefined
  slowestS: number | undefined
  wallS: number | undefined
  originBlobRatio?: number | undefined
  targets: { name: string; value: number | undefined; limit: number; met: boolean | undefined }[]
}

export interface LabResult {
  version: 1
  startedAt: string
  finishedAt: string
  options: Omit<LabOptions, 'log' | 'signal' | 'onLab'>
  machine: {
    cpus: number
    loadavgStart: number[]
    loadavgEnd: number[]
    node: string
    kernel: string
    /** The TCP congestion control the lab's hosts inherit from the machine (e.g. cubic, bbr). */
    tcpCongestionControl?: string
    /** CPU ms per MiB written to a new file, first and again at once (see `writeCost`). */
    writeCost?: { firstMsPerMiB: number; againMsPerMiB: number }
  }
  /** Which daemon was measured: git HEAD and a hash of the uncommitted diff of src/ (if any). */
  engine: { head: string; srcDiff: string }
  runs: RunResult[]
  summary: CaseSummary[]
  errors: string[]
  /** Every PID the lab started and every namespace it made (to check they are gone). */
  pids: number[]
  namespaces: string[]
  files: { json?: string; progressSvg?: string[]; sweepSvg?: string }
}
