/**
 * Peer-to-peer throughput: daemon A (swarm on) holds a blob; daemon B, bootstrapped to A, with its
 * default upstream on a dead port (every byte it gets must come from A), pulls it over HTTP from
 * its own /v2/. Baseline in the same run: the same bytes between the same kind of processes over
 * plain HTTP (a node:http server reading the file → an undici client to a sink). Reported: MiB/s,
 * CPU seconds of receiver and sender (from /proc/PID/stat), B's shoal_blob_bytes_total{source}.
 *
 * Every process (daemons, raw-HTTP server, client) runs with the variant's Node binary, each in its
 * own process, all on 127.0.0.1; B gets a fresh data dir each run.
 */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import type { BlobFile } from './blob.js'
import { MIB, mibPerSec, type PullResult } from './client.js'
import { type CountingProxy, startCountingProxy } from './counting-proxy.js'
import { CpuMeter } from './cpu.js'
import { summariseCpuProfile } from './cpuprofile.js'
import { freePort, LOOPBACK } from './net.js'
import type { Context } from './phases.js'
import { REPO } from './phases.js'
import { type Managed, readMem, startProcess, stopProcess, tailLog } from './procs.js'
import { type ShoalServer, startShoal } from './servers.js'
import type { BlobBytes, P2pPull, P2pResult, P2pVariant, PullCommand } from './types.js'

const PULL_CLIENT = fileURLToPath(new URL('./pull-client.js', import.meta.url))
const RAW_SERVER = fileURLToPath(new URL('./raw-http-server.js', import.meta.url))

export interface P2pOptions {
  runs: number
  /** The bench's own Node first, then these. */
  nodeBins: string[]
  /** Hash the measured pulls too (default: count only; B's first pull is verified by a hashed re-read). */
  verify: boolean
  /** Directory for --cpu-prof profiles of the daemons, or undefined for none. */
  profileDir: string | undefined
  /** No new run is started once a variant has taken this long (the runs done are reported). */
  budgetMs: number
  /** B's upstream during the pull (see --p2p-origin in args.ts). */
  originMode: 'dead' | 'down' | 'live'
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** The blob's data file in docker-registry 2.8's filesystem storage. */
export function registryBlobPath(dataDir: string, digest: string): string {
  const hex = digest.replace(/^sha256:/, '')
  return join(dataDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data')
}

function nodeVersion(bin: string): string {
  try {
    return execFileSync(bin, ['--version'], { encoding: 'utf8', timeout: 5000 }).trim()
  } catch (err) {
    return `unknown (${errText(err)})`
  }
}

/** Lines a piped child writes on stdout, one at a time. */
class LineReader {
  private readonly lines: string[] = []
  private readonly waiters: ((line: string) => void)[] = []

  constructor(private readonly proc: Managed) {
    const stdout = proc.child.stdout
    if (stdout === null) throw new Error(`${proc.name}: no stdout pipe`)
    createInterface({ input: stdout }).on('line', (l) => {
      const w = this.waiters.shift()
      if (w !== undefined) w(l)
      else this.lines.push(l)
    })
  }

  /** The next line; rejects when the process exits first or after `timeoutMs`. */
  async next(timeoutMs: number): Promise<string> {
    const queued = this.lines.shift()
    if (queued !== undefined) return queued
    let waiter: ((line: string) => void) | undefined
    const line = new Promise<string>((resolve) => {
      waiter = resolve
      this.waiters.push(resolve)
    })
    const timer = new AbortController()
    try {
      return await Promise.race([
        line,
        this.proc.exited.then(async (how) => {
          await sleep(100)
          throw new Error(`${this.proc.name} exited (${how}):\n${tailLog(this.proc)}`)
        }),
        sleep(timeoutMs, undefined, { signal: timer.signal }).then(() => {
          throw new Error(`${this.proc.name}: no answer within ${timeoutMs} ms`)
        }),
      ])
    } finally {
      timer.abort()
      const i = waiter === undefined ? -1 : this.waiters.indexOf(waiter)
      if (i >= 0) this.waiters.splice(i, 1)
    }
  }
}

/** The spawned undici client (pull-client.ts). */
interface PullClient {
  proc: Managed
  pull(cmd: PullCommand): Promise<PullResult>
}

async function startPullClient(ctx: Context, name: string, nodeBin: string): Promise<PullClient> {
  const proc = startProcess(name, nodeBin, [PULL_CLIENT], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: ctx.workDir },
    logFile: join(ctx.workDir, `${name}.log`),
    stdio: 'pipe',
  })
  const reader = new LineReader(proc)
  let broken: string | undefined
  const first = await reader.next(15_000)
  if (!first.includes('"ready"')) throw new Error(`${name}: unexpected first line ${first.slice(0, 200)}`)
  return {
    proc,
    async pull(cmd) {
      // A late answer would be taken for the next pull's: after a missed one, the client is done.
      if (broken !== undefined) throw new Error(`${name} unusable: ${broken}`)
      proc.child.stdin?.write(`${JSON.stringify(cmd)}\n`)
      let line: string
      try {
        line = await reader.next(cmd.timeoutMs + 10_000)
      } catch (err) {
        broken = errText(err)
        throw err
      }
      const answer = JSON.parse(line) as PullResult | { error: string }
      if ('error' in answer) throw new Error(answer.error)
      return answer
    },
  }
}

/** The spawned node:http server of the baseline (raw-http-server.ts). */
async function startRawServer(
  ctx: Context,
  name: string,
  nodeBin: string,
  file: string,
): Promise<{ proc: Managed; url: string }> {
  const proc = startProcess(name, nodeBin, [RAW_SERVER, file], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: ctx.workDir },
    logFile: join(ctx.workDir, `${name}.log`),
    stdio: 'pipe',
  })
  const line = await new LineReader(proc).next(15_000)
  const port = (JSON.parse(line) as { port?: number }).port
  if (port === undefined || port === 0) throw new Error(`${name}: no port in ${line.slice(0, 200)}`)
  return { proc, url: `http://${LOOPBACK}:${port}/blob` }
}

async function getText(url: string): Promise<string> {
  const res = await request(url, { signal: AbortSignal.timeout(5000) })
  const text = await res.body.text()
  if (res.statusCode !== 200) throw new Error(`GET ${url}: status ${res.statusCode}`)
  return text
}

/** Blob bytes a daemon obtained, by source (its /metrics). */
export async function blobBytes(admin: string): Promise<BlobBytes> {
  const out: BlobBytes = { origin: 0, peer: 0, cache: 0 }
  for (const line of (await getText(`${admin}/metrics`)).split('\n')) {
    const m = /^shoal_blob_bytes_total\{source="(origin|peer|cache)"\}\s+(\S+)/.exec(line)
    if (m?.[1] !== undefined && m[2] !== undefined) out[m[1] as keyof BlobBytes] += Number(m[2])
  }
  return out
}

function diff(a: BlobBytes, b: BlobBytes): BlobBytes {
  return { origin: b.origin - a.origin, peer: b.peer - a.peer, cache: b.cache - a.cache }
}

/** Until the daemon has a peer (its admin /status); ms waited. */
export async function waitForPeer(server: ShoalServer, timeoutMs: number): Promise<number> {
  const started = performance.now()
  let last = 'no answer'
  while (performance.now() - started < timeoutMs) {
    if (server.proc.hasExited()) throw new Error(`${server.name} exited:\n${tailLog(server.proc)}`)
    try {
      const s = JSON.parse(await getText(`${server.admin}/status`)) as { peers?: unknown }
      if (typeof s.peers === 'number' && s.peers >= 1) return performance.now() - started
      last = `peers ${String(s.peers)}`
    } catch (err) {
      last = errText(err)
    }
    await sleep(100)
  }
  throw new Error(`${server.name}: no peer connected within ${timeoutMs} ms (last: ${last})`)
}

function pullRecord(r: PullResult): P2pPull {
  const bodyMs = Math.max(1, r.ms - r.ttfbMs)
  return {
    mibPerSec: mibPerSec(r.bytes, r.ms),
    ms: r.ms,
    ttfbMs: r.ttfbMs,
    bodyMiBps: mibPerSec(r.bytes, bodyMs),
    source: r.source,
  }
}

function profileEnv(dir: string | undefined, name: string): NodeJS.ProcessEnv {
  if (dir === undefined) return {}
  return { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${dir} --cpu-prof-name=${name}.cpuprofile` }
}

export async function runP2p(
  ctx: Context,
  blob: Pick<BlobFile, 'digest' | 'size'>,
  opts: P2pOptions,
): Promise<P2pResult> {
  const file = registryBlobPath(ctx.origin.dataDir, blob.digest)
  const result: P2pResult = { blobBytes: blob.size, runs: opts.runs, originMode: opts.originMode, variants: [] }
  const bins = [process.execPath, ...opts.nodeBins.filter((b) => b !== process.execPath)]
  for (const [i, bin] of bins.entries()) {
    const v = await runVariant(ctx, blob, file, bin, `n${i}`, opts)
    result.variants.push(v)
  }
  return result
}

async function stopQuietly(ctx: Context, proc: Managed | undefined): Promise<void> {
  if (proc === undefined) return
  const how = await stopProcess(proc)
  if (!/^code 0$|signal SIGTERM/.test(how)) ctx.log(`  ${proc.name} stopped: ${how}`)
}

async function runVariant(
  ctx: Context,
  blob: Pick<BlobFile, 'digest' | 'size'>,
  file: string,
  nodeBin: string,
  tag: string,
  opts: P2pOptions,
): Promise<P2pVariant> {
  const v: P2pVariant = {
    nodeBin,
    node: nodeVersion(nodeBin),
    p2p: [],
    http: [],
    cacheHit: [],
    problems: [],
    profiles: [],
  }
  ctx.log(`  p2p with ${v.node} (${nodeBin})`)
  const started = performance.now()
  // 60 s plus 10 MiB/s: a slower pull is a failure worth reporting, not worth waiting for.
  const timeoutMs = 60_000 + (blob.size / (10 * MIB)) * 1000
  const blobPath = `/v2/${REPO}/blobs/${blob.digest}`
  let client: PullClient | undefined
  let a: ShoalServer | undefined
  let raw: { proc: Managed; url: string } | undefined
  const profiles: { name: string; file: string }[] = []
  const profiled = (name: string): NodeJS.ProcessEnv => {
    if (opts.profileDir === undefined) return {}
    profiles.push({ name, file: join(opts.profileDir, `${name}.cpuprofile`) })
    return profileEnv(opts.profileDir, name)
  }
  try {
    if (!existsSync(file)) throw new Error(`blob file not found in the origin's storage: ${file}`)
    if (opts.profileDir !== undefined) await mkdir(opts.profileDir, { recursive: true })
    const startA = (phase: string): Promise<ShoalServer> =>
      startShoal({
        name: `p2p-a-${tag}${phase}`,
        workDir: ctx.workDir,
        dataDir: join(ctx.workDir, `p2p-a-${tag}`),
        upstream: ctx.origin.base,
        logLevel: ctx.shoalLogLevel,
        nodeBin,
        swarm: { bootstrap: [] },
        admin: true,
        env: profiled(`${tag}-A${phase}`),
      })
    a = await startA('-fill')
    client = await startPullClient(ctx, `p2p-client-${tag}`, nodeBin)
    const fill = await client.pull({ url: `${a.base}${blobPath}`, expectBytes: blob.size, hash: true, timeoutMs })
    v.fill = { ...pullRecord(fill), digestOk: fill.digest === blob.digest }
    if (!v.fill.digestOk) throw new Error(`A's first pull: body digest ${fill.digest} != ${blob.digest}`)
    ctx.log(`    A filled from the origin: ${v.fill.mibPerSec.toFixed(0)} MiB/s, source ${fill.source ?? '-'}`)
    // A again on the same data dir: its memory and profile then cover serving peers only.
    await stopQuietly(ctx, a.proc)
    a = await startA('')
    raw = await startRawServer(ctx, `p2p-http-${tag}`, nodeBin, file)
    const deadUpstream = `http://${LOOPBACK}:${await freePort()}`

    const p2pRun = async (i: number): Promise<void> => {
      const name = `p2p-b-${tag}-${i + 1}`
      const dataDir = join(ctx.workDir, name)
      let b: ShoalServer | undefined
      let proxy: CountingProxy | undefined
      try {
        // down/live: B's upstream is a TCP proxy to the origin (B records the repository's access
        // and the blob's link with one HEAD through it); down closes it before the pull.
        if (opts.originMode !== 'dead') proxy = await startCountingProxy(new URL(ctx.origin.base))
        b = await startShoal({
          name,
          workDir: ctx.workDir,
          dataDir,
          upstream: proxy?.url ?? deadUpstream,
          logLevel: ctx.shoalLogLevel,
          nodeBin,
          swarm: { bootstrap: [a!.p2pAddr!] },
          admin: true,
          env: profiled(`${tag}-B-run${i + 1}`),
        })
        const peerMs = await waitForPeer(b, 15_000)
        if (proxy !== undefined) {
          const head = await request(`${b.base}${blobPath}`, { method: 'HEAD', signal: AbortSignal.timeout(30_000) })
          await head.body.dump()
          if (head.statusCode !== 200) throw new Error(`HEAD of the blob through B: status ${head.statusCode}`)
          if (opts.originMode === 'down') {
            await proxy.close()
            proxy = undefined
          }
        }
        const before = await blobBytes(b.admin!)
        const linkBefore = proxy?.counts().down
        const meter = new CpuMeter([b.proc.pid, a!.proc.pid, client!.proc.pid])
        const r = await client!.pull({
          url: `${b.base}${blobPath}`,
          expectBytes: blob.size,
          hash: opts.verify,
          timeoutMs,
        })
        const [bCpu, aCpu, cCpu] = meter.stop()
        const linkBytes = linkBefore === undefined ? undefined : (proxy?.counts().down ?? 0) - linkBefore
        if (r.digest !== undefined && r.digest !== blob.digest)
          throw new Error(`B's body digest ${r.digest} != ${blob.digest}`)
        // The counter moves as pieces arrive; give it a moment to catch up with the last one.
        let got = diff(before, await blobBytes(b.admin!))
        for (let t = 0; t < 20 && got.peer < blob.size; t++) {
          await sleep(100)
          got = diff(before, await blobBytes(b.admin!))
        }
        const rec: P2pPull = {
          ...pullRecord(r),
          blobBytes: got,
          receiverHwmMiB: (readMem(b.proc.pid)?.hwmKiB ?? 0) / 1024,
        }
        if (bCpu !== undefined) rec.receiverCpuS = bCpu
        if (aCpu !== undefined) rec.senderCpuS = aCpu
        if (cCpu !== undefined) rec.clientCpuS = cCpu
        if (linkBytes !== undefined) rec.originLinkBytes = linkBytes
        v.p2p.push(rec)
        if (got.peer !== blob.size || got.origin !== 0) {
          v.problems.push(`run ${i + 1}: B's blob bytes ${JSON.stringify(got)}, want peer = ${blob.size}, origin = 0`)
        }
        ctx.log(
          `    run ${i + 1} p2p: ${rec.mibPerSec.toFixed(0)} MiB/s (first byte after ${(rec.ttfbMs / 1000).toFixed(2)} s, ` +
            `then ${rec.bodyMiBps.toFixed(0)} MiB/s), B ${bCpu?.toFixed(2)} s CPU, A ${aCpu?.toFixed(2)} s, ` +
            `peer connected after ${(peerMs / 1000).toFixed(2)} s, source ${r.source ?? '-'}, bytes ${JSON.stringify(got)}`,
        )
        // B's copy, read back and hashed once (unmeasured) when the measured pulls were not hashed.
        if (i === 0 && !opts.verify) {
          try {
            const h = await client!.pull({ url: `${b.base}${blobPath}`, expectBytes: blob.size, hash: true, timeoutMs })
            v.verified = h.digest === blob.digest
            if (!v.verified) v.problems.push(`B's copy: digest ${h.digest} != ${blob.digest}`)
          } catch (err) {
            v.problems.push(`B's copy could not be read back for the digest check: ${errText(err)}`)
          }
        } else if (r.digest !== undefined) {
          v.verified = (v.verified ?? true) && r.digest === blob.digest
        }
        // Reference: B serving the blob from its own cache.
        try {
          const m0 = await blobBytes(b.admin!)
          const cm = new CpuMeter([b.proc.pid, client!.proc.pid])
          const c = await client!.pull({
            url: `${b.base}${blobPath}`,
            expectBytes: blob.size,
            hash: opts.verify,
            timeoutMs,
          })
          const [bc, cc] = cm.stop()
          const hit: P2pPull = { ...pullRecord(c), blobBytes: diff(m0, await blobBytes(b.admin!)) }
          if (bc !== undefined) hit.receiverCpuS = bc
          if (cc !== undefined) hit.clientCpuS = cc
          v.cacheHit.push(hit)
          ctx.log(`    run ${i + 1} cache hit on B: ${hit.mibPerSec.toFixed(0)} MiB/s, source ${c.source ?? '-'}`)
        } catch (err) {
          v.problems.push(`run ${i + 1}: cache hit on B failed: ${errText(err)}`)
        }
      } catch (err) {
        const dead = b?.proc.hasExited() === true ? ` (B exited: ${await b.proc.exited})\n${tailLog(b.proc)}` : ''
        v.problems.push(`run ${i + 1} p2p: ${errText(err)}${dead}`)
        ctx.log(`    run ${i + 1} p2p FAILED: ${errText(err)}`)
      } finally {
        await stopQuietly(ctx, b?.proc)
        await proxy?.close()
        await rm(dataDir, { recursive: true, force: true })
      }
    }

    const httpRun = async (i: number): Promise<void> => {
      try {
        const meter = new CpuMeter([client!.proc.pid, raw!.proc.pid])
        const r = await client!.pull({ url: raw!.url, expectBytes: blob.size, hash: opts.verify, timeoutMs })
        const [cCpu, sCpu] = meter.stop()
        if (r.digest !== undefined && r.digest !== blob.digest)
          throw new Error(`body digest ${r.digest} != ${blob.digest}`)
        const rec = pullRecord(r)
        if (cCpu !== undefined) rec.receiverCpuS = cCpu
        if (sCpu !== undefined) rec.senderCpuS = sCpu
        v.http.push(rec)
        ctx.log(
          `    run ${i + 1} raw HTTP: ${rec.mibPerSec.toFixed(0)} MiB/s, client ${cCpu?.toFixed(2)} s CPU, server ${sCpu?.toFixed(2)} s`,
        )
      } catch (err) {
        v.problems.push(`run ${i + 1} raw HTTP: ${errText(err)}`)
      }
    }

    let lastRunMs = 0
    for (let i = 0; i < opts.runs; i++) {
      // Bounded: no run is started that would likely end after the budget (the one before is the estimate).
      if (i > 0 && performance.now() - started + lastRunMs > opts.budgetMs) {
        v.problems.push(
          `stopped after ${i} of ${opts.runs} runs: another would end after the time budget of ${(opts.budgetMs / 1000).toFixed(0)} s`,
        )
        break
      }
      const t0 = performance.now()
      const order = i % 2 === 0 ? [p2pRun, httpRun] : [httpRun, p2pRun]
      for (const run of order) await run(i)
      lastRunMs = performance.now() - t0
    }
    if (a !== undefined && !a.proc.hasExited()) v.senderHwmMiB = (readMem(a.proc.pid)?.hwmKiB ?? 0) / 1024
  } catch (err) {
    v.error = errText(err)
    ctx.log(`    p2p with ${v.node} FAILED: ${v.error.split('\n')[0]}`)
  } finally {
    client?.proc.child.stdin?.end()
    await Promise.all([stopQuietly(ctx, client?.proc), stopQuietly(ctx, a?.proc), stopQuietly(ctx, raw?.proc)])
    await rm(join(ctx.workDir, `p2p-a-${tag}`), { recursive: true, force: true })
  }
  for (const p of profiles) {
    if (!existsSync(p.file)) continue
    try {
      v.profiles.push(await summariseCpuProfile(p.name, p.file))
    } catch (err) {
      v.problems.push(`profile ${p.file}: ${errText(err)}`)
    }
  }
  return v
}
