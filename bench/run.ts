/**
 * Shoal benchmark: `npm run bench [-- --quick | --size 1G --cold-size 256M --clients 10 --runs 3]`.
 *
 * 1. Cache hit over loopback: MiB/s of Shoal serving a cached blob vs docker-registry serving the
 *    same blob from its filesystem storage (median of N runs each, same client code).
 * 2. Cold single-flight: N concurrent clients pulling one uncached blob; bytes the origin sent to
 *    the mirror (counted by a TCP proxy between them) / blob size, and wall time, for Shoal and for
 *    docker-registry in proxy mode.
 * 3. Peak RSS (VmHWM, and VmRSS sampled every 100 ms) of each server during both.
 * 4. Peer to peer: daemon B (upstream a dead port) pulling a blob daemon A holds, over the swarm,
 *    vs the same bytes over plain HTTP between two Node processes; MiB/s and CPU per GiB.
 *
 * Everything listens on 127.0.0.1; temp files live in /tmp/shoal-bench-* and are removed at the
 * end. Results are printed as a table and written to bench/results/ — never asserted.
 */
import { execFileSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type BenchOptions, parseOptions, USAGE } from './lib/args.js'
import { generateBlob, uploadBlob } from './lib/blob.js'
import { MIB } from './lib/client.js'
import { runP2p } from './lib/p2p.js'
import { p2pFailed } from './lib/p2p-report.js'
import { type Context, REPO, runColdBoth, runHit } from './lib/phases.js'
import { killAllSync, stopAll, stopProcess } from './lib/procs.js'
import { renderTable } from './lib/report.js'
import { REGISTRY_BIN, type Server, startRegistry } from './lib/servers.js'
import type { BenchResult } from './lib/types.js'

const RESULTS_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url))
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))

function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function quiet(cmd: string, args: string[], cwd?: string): string {
  try {
    return execFileSync(cmd, args, { cwd, timeout: 5000, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return 'unknown'
  }
}

function environment(): Record<string, string> {
  const dirty = quiet('git', ['status', '--porcelain', '--', 'src'], REPO_ROOT)
  const commit = quiet('git', ['rev-parse', '--short', 'HEAD'], REPO_ROOT)
  return {
    node: process.version,
    cpus: String(cpus().length),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    registry: quiet(REGISTRY_BIN, ['--version']).replace(/^.*distribution\s*/, 'docker-registry '),
    commit: dirty === '' || dirty === 'unknown' ? commit : `${commit}+dirty`,
    loadavgAtStart: loadavg()[0]?.toFixed(2) ?? 'unknown',
  }
}

let workDir: string | undefined
let keepWorkDir = false

function removeWorkDirSync(): void {
  if (workDir !== undefined && !keepWorkDir) rmSync(workDir, { recursive: true, force: true })
}

async function main(opts: BenchOptions): Promise<number> {
  const started = Date.now()
  const result: BenchResult = {
    startedAt: new Date(started).toISOString(),
    durationS: 0,
    options: { ...opts },
    env: environment(),
    errors: [],
  }
  workDir = await mkdtemp('/tmp/shoal-bench-')
  keepWorkDir = opts.keep
  log(`work dir ${workDir}`)
  let origin: Server | undefined
  try {
    const wantHit = opts.only === 'all' || opts.only === 'hit'
    const wantCold = opts.only === 'all' || opts.only === 'cold'
    const wantP2p = opts.only === 'all' || opts.only === 'p2p'
    // The p2p test reuses the cache-hit blob when the sizes agree (one blob less to make and upload).
    const p2pOwnBlob = wantP2p && !(wantHit && opts.p2pSize === opts.hitSize)
    const sizes = [
      wantHit ? `hit ${opts.hitSize / MIB} MiB` : '',
      wantCold ? `cold ${opts.coldSize / MIB} MiB` : '',
      p2pOwnBlob ? `p2p ${opts.p2pSize / MIB} MiB` : '',
    ]
    log(`generating blobs: ${sizes.filter((x) => x !== '').join(', ')}`)
    const hitBlob = wantHit ? await generateBlob(join(workDir, 'hit.blob'), opts.hitSize) : undefined
    const coldBlob = wantCold ? await generateBlob(join(workDir, 'cold.blob'), opts.coldSize) : undefined
    const p2pBlob = p2pOwnBlob
      ? await generateBlob(join(workDir, 'p2p.blob'), opts.p2pSize)
      : wantP2p
        ? hitBlob
        : undefined

    origin = await startRegistry({ name: 'origin', workDir, dataDir: join(workDir, 'origin-data') })
    log(`origin docker-registry at ${origin.base}; uploading`)
    for (const b of [hitBlob, coldBlob, p2pOwnBlob ? p2pBlob : undefined]) {
      if (b === undefined) continue
      const t0 = performance.now()
      await uploadBlob(origin.base, REPO, b)
      log(
        `  uploaded ${b.digest.slice(0, 19)}… (${b.size / MIB} MiB) in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      )
      await rm(b.path, { force: true })
    }
    const ctx: Context = { workDir, origin, shoalLogLevel: opts.shoalLogLevel, log }

    if (hitBlob !== undefined) {
      log(`test 1: cache hit, ${opts.hitSize / MIB} MiB, ${opts.runs} runs each`)
      result.hit = await runHit(ctx, hitBlob, opts.runs, opts.verifyHit)
      await rm(join(workDir, 'shoal-hit-data'), { recursive: true, force: true })
    }
    if (coldBlob !== undefined) {
      log(`test 2: cold single-flight, ${opts.coldSize / MIB} MiB, ${opts.clients} clients`)
      result.cold = await runColdBoth(ctx, coldBlob, opts.clients, opts.hashCold)
    }
    if (p2pBlob !== undefined) {
      const extra = opts.nodeBins.length > 0 ? `, also with ${opts.nodeBins.join(', ')}` : ''
      log(`test 4: peer to peer, ${p2pBlob.size / MIB} MiB, ${opts.runs} runs${extra}`)
      result.p2p = await runP2p(ctx, p2pBlob, {
        runs: opts.runs,
        nodeBins: opts.nodeBins,
        verify: opts.verifyHit,
        profileDir: opts.cpuProf ? join(RESULTS_DIR, `p2p-prof-${result.startedAt.replace(/[:.]/g, '-')}`) : undefined,
        budgetMs: 160_000,
        originMode: opts.p2pOrigin,
      })
    }
  } catch (err) {
    result.errors.push(errText(err))
    log(`FAILED: ${errText(err)}`)
  } finally {
    if (origin !== undefined) await stopProcess(origin.proc)
    await stopAll()
    if (!keepWorkDir) await rm(workDir, { recursive: true, force: true })
    else log(`kept ${workDir}`)
  }
  result.durationS = (Date.now() - started) / 1000
  result.env.loadavgAtEnd = loadavg()[0]?.toFixed(2) ?? 'unknown'

  process.stdout.write(`\n${renderTable(result)}\n\n`)
  await mkdir(RESULTS_DIR, { recursive: true })
  const stamp = result.startedAt.replace(/[:.]/g, '-')
  const file = join(RESULTS_DIR, `bench-${stamp}.json`)
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`)
  await writeFile(join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(result, null, 2)}\n`)
  log(`results written to ${file}`)

  const sideErrors = [result.hit?.shoal, result.hit?.registry, result.cold?.shoal, result.cold?.registry].filter(
    (s) => s?.error !== undefined,
  )
  return result.errors.length > 0 || sideErrors.length > 0 || p2pFailed(result.p2p) ? 1 : 0
}

function parseOrExit(): BenchOptions {
  let parsed: BenchOptions | 'help'
  try {
    parsed = parseOptions(process.argv.slice(2))
  } catch (err) {
    process.stderr.write(`${errText(err)}\n${USAGE}\n`)
    process.exit(2)
  }
  if (parsed === 'help') {
    process.stdout.write(`${USAGE}\n`)
    process.exit(0)
  }
  return parsed
}
const opts = parseOrExit()

process.on('exit', () => {
  killAllSync()
  removeWorkDirSync()
})
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`${sig}: stopping`)
    const force = setTimeout(() => process.exit(130), 15_000)
    force.unref()
    void stopAll().finally(() => process.exit(130))
  })
}
const watchdog = setTimeout(() => {
  log(`hard time limit of ${opts.maxMinutes} min reached: stopping`)
  void stopAll().finally(() => process.exit(3))
  setTimeout(() => process.exit(3), 15_000).unref()
}, opts.maxMinutes * 60_000)
watchdog.unref()

main(opts)
  .then((code) => {
    process.exitCode = code
  })
  .catch((err: unknown) => {
    log(`FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
    process.exitCode = 1
  })
