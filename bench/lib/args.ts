import { parseArgs } from 'node:util'

export interface BenchOptions {
  hitSize: number
  coldSize: number
  /** Blob of the peer-to-peer phase. */
  p2pSize: number
  /** Extra Node binaries to run the p2p phase's daemons (and its raw-HTTP baseline) with. */
  nodeBins: string[]
  /** What daemon B's upstream is during its p2p pull (see the usage text). */
  p2pOrigin: 'dead' | 'down' | 'live'
  /** --cpu-prof the p2p phase's daemons (NODE_OPTIONS) and summarise the profiles. */
  cpuProf: boolean
  clients: number
  runs: number
  only: 'all' | 'hit' | 'cold' | 'p2p'
  verifyHit: boolean
  hashCold: boolean
  shoalLogLevel: string
  keep: boolean
  maxMinutes: number
  quick: boolean
}

export const USAGE = `usage: npm run bench -- [options]
   or: node dist/bench/run.js [options]

  --quick              small sizes for a fast check (hit 256 MiB, cold 64 MiB, p2p 256 MiB)
  --size <n>           cache-hit blob size (default 1G; suffixes K, M, G; a bare number is MiB)
  --cold-size <n>      cold single-flight blob size (default 256M)
  --p2p-size <n>       peer-to-peer blob size (default 1G)
  --clients <n>        concurrent clients in the cold test (default 10)
  --runs <n>           measured runs per server in the cache-hit and p2p tests (default 3, median reported)
  --only <hit|cold|p2p> run one of the tests
  --p2p-origin <mode>  p2p test, what daemon B's default upstream is:
                         down (default): a TCP proxy to the origin that B uses for one HEAD of the
                           blob (the repository's access check and link; no blob byte), then
                           closed: the pull runs with the upstream a dead port
                         dead: a dead port from the start (B never saw the origin)
                         live: the proxy stays up (bytes must still come from A: metrics + proxy)
  --node-bin <path>    p2p test: also run the daemons (and the raw-HTTP baseline) with this Node
                       binary, e.g. /usr/bin/node (repeatable; the bench's own Node always runs)
  --cpu-prof           p2p test: run the daemons with NODE_OPTIONS=--cpu-prof and print where their
                       CPU went (profiles kept in bench/results/; the numbers of such a run are skewed)
  --verify             also sha256 the body in the cache-hit and p2p runs (default: count bytes only)
  --cold-count-only    do not sha256 the bodies in the cold test (default: hash and check them)
  --shoal-log-level <l> log level given to the daemon (default info)
  --keep               keep the temp dir (blobs, data dirs, logs) under /tmp
  --max-minutes <n>    hard time limit for the whole run (default 20)
  -h, --help`

export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim())
  if (m === null || m[1] === undefined) throw new Error(`bad size: ${text}`)
  const value = Number(m[1])
  const unit = (m[2] ?? '').toUpperCase()
  const mult: Record<string, number> = { '': 1024 ** 2, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }
  const bytes = Math.round(value * (mult[unit] ?? 1024 ** 2))
  if (bytes < 1 || bytes > 64 * 1024 ** 3) throw new Error(`size out of range: ${text}`)
  return bytes
}

function positiveInt(name: string, text: string, max: number): number {
  const n = Number(text)
  if (!Number.isInteger(n) || n < 1 || n > max) throw new Error(`--${name} must be an integer in 1..${max}`)
  return n
}

export function parseOptions(argv: string[]): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      size: { type: 'string' },
      'cold-size': { type: 'string' },
      'p2p-size': { type: 'string' },
      'node-bin': { type: 'string', multiple: true, default: [] },
      'cpu-prof': { type: 'boolean', default: false },
      'p2p-origin': { type: 'string', default: 'down' },
      clients: { type: 'string', default: '10' },
      runs: { type: 'string', default: '3' },
      only: { type: 'string' },
      verify: { type: 'boolean', default: false },
      'cold-count-only': { type: 'boolean', default: false },
      'shoal-log-level': { type: 'string', default: 'info' },
      keep: { type: 'boolean', default: false },
      'max-minutes': { type: 'string', default: '20' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  })
  if (values.help) return 'help'
  const only = values.only ?? 'all'
  if (only !== 'all' && only !== 'hit' && only !== 'cold' && only !== 'p2p') {
    throw new Error('--only must be hit, cold or p2p')
  }
  const p2pOrigin = values['p2p-origin']
  if (p2pOrigin !== 'dead' && p2pOrigin !== 'down' && p2pOrigin !== 'live') {
    throw new Error('--p2p-origin must be down, dead or live')
  }
  return {
    quick: values.quick,
    hitSize: parseSize(values.size ?? (values.quick ? '256M' : '1G')),
    coldSize: parseSize(values['cold-size'] ?? (values.quick ? '64M' : '256M')),
    p2pSize: parseSize(values['p2p-size'] ?? (values.quick ? '256M' : '1G')),
    nodeBins: values['node-bin'],
    cpuProf: values['cpu-prof'],
    p2pOrigin,
    clients: positiveInt('clients', values.clients, 100),
    runs: positiveInt('runs', values.runs, 20),
    only,
    verifyHit: values.verify,
    hashCold: !values['cold-count-only'],
    shoalLogLevel: values['shoal-log-level'],
    keep: values.keep,
    maxMinutes: positiveInt('max-minutes', values['max-minutes'], 120),
  }
}
