import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Agent } from 'undici'
import type { BlobFile } from './blob.js'
import { mibPerSec, newAgent, pullBlob, transferTimeoutMs } from './client.js'
import { startCountingProxy } from './counting-proxy.js'
import { RssSampler, stopProcess, tailLog } from './procs.js'
import { type Server, startRegistry, startShoal } from './servers.js'
import type { ColdClient, ColdResult, ColdSide, HitResult, HitRun, HitSide } from './types.js'

export const REPO = 'bench/blob'

export interface Context {
  workDir: string
  origin: Server
  shoalLogLevel: string
  log(msg: string): void
}

type BlobRef = Pick<BlobFile, 'digest' | 'size'>

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

export function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2
}

/** After a failed request: if the server died (give it 500 ms to be seen dying), how, and its log tail. */
async function exitNote(server: Server): Promise<string> {
  await Promise.race([server.proc.exited, sleep(500)])
  return server.proc.hasExited() ? ` (${server.name} exited: ${await server.proc.exited})\n${tailLog(server.proc)}` : ''
}

async function stopServer(ctx: Context, server: Server | undefined): Promise<void> {
  if (server === undefined) return
  const how = await stopProcess(server.proc)
  if (!/^code 0$|signal SIGTERM/.test(how)) ctx.log(`  ${server.name} stopped: ${how}`)
}

interface HitParticipant {
  label: 'shoal' | 'registry'
  server?: Server
  sampler?: RssSampler
  side: HitSide
}

/**
 * Cache hit: the same blob from Shoal's cache and from a docker-registry reading the origin's
 * filesystem storage. One unmeasured (hashed) pull each first, then `runs` measured pulls each,
 * interleaved and alternating who goes first.
 */
export async function runHit(ctx: Context, blob: BlobRef, runs: number, verify: boolean): Promise<HitResult> {
  const registry: HitParticipant = { label: 'registry', side: { runs: [] } }
  const shoal: HitParticipant = { label: 'shoal', side: { runs: [] } }
  const timeoutMs = transferTimeoutMs(blob.size)
  let agent: Agent | undefined
  try {
    try {
      // A second docker-registry on the origin's storage directory: its memory readings cover
      // only serving, not the upload.
      registry.server = await startRegistry({
        name: 'registry-hit',
        workDir: ctx.workDir,
        dataDir: ctx.origin.dataDir,
      })
      registry.sampler = new RssSampler(registry.server.proc.pid)
    } catch (err) {
      registry.side.error = `start: ${errText(err)}`
    }
    try {
      shoal.server = await startShoal({
        name: 'shoal-hit',
        workDir: ctx.workDir,
        dataDir: join(ctx.workDir, 'shoal-hit-data'),
        upstream: ctx.origin.base,
        logLevel: ctx.shoalLogLevel,
      })
      shoal.sampler = new RssSampler(shoal.server.proc.pid)
    } catch (err) {
      shoal.side.error = `start: ${errText(err)}`
    }
    agent = newAgent(4)
    const pull = async (p: HitParticipant, hash: boolean): Promise<(HitRun & { digestOk: boolean }) | undefined> => {
      if (p.server === undefined || p.side.error !== undefined) return undefined
      try {
        const r = await pullBlob(`${p.server.base}/v2/${REPO}/blobs/${blob.digest}`, {
          dispatcher: agent!,
          hash,
          expectBytes: blob.size,
          timeoutMs,
        })
        const digestOk = r.digest === undefined || r.digest === blob.digest
        if (!digestOk) p.side.error = `body digest ${r.digest} != ${blob.digest}`
        return { mibPerSec: mibPerSec(r.bytes, r.ms), ms: r.ms, ttfbMs: r.ttfbMs, source: r.source, digestOk }
      } catch (err) {
        p.side.error = `${errText(err)}${await exitNote(p.server)}`
        return undefined
      }
    }
    for (const p of [shoal, registry]) {
      p.sampler?.segment()
      const warm = await pull(p, true)
      if (p.sampler !== undefined) p.side.warmMaxRssMiB = p.sampler.segment()
      if (warm !== undefined) {
        p.side.warm = warm
        ctx.log(`  warm ${p.label}: ${warm.mibPerSec.toFixed(0)} MiB/s, source ${warm.source ?? '-'}`)
      }
    }
    shoal.sampler?.segment()
    registry.sampler?.segment()
    for (let i = 0; i < runs; i++) {
      const order = i % 2 === 0 ? [registry, shoal] : [shoal, registry]
      for (const p of order) {
        const r = await pull(p, verify)
        if (r === undefined) continue
        const { digestOk: _, ...run } = r
        p.side.runs.push(run)
        ctx.log(`  run ${i + 1} ${p.label}: ${r.mibPerSec.toFixed(0)} MiB/s, source ${r.source ?? '-'}`)
      }
    }
    for (const p of [shoal, registry]) {
      if (p.sampler !== undefined && p.side.runs.length > 0) p.side.runsMaxRssMiB = p.sampler.segment()
      p.side.medianMiBps = median(p.side.runs.map((r) => r.mibPerSec))
      if (p.sampler !== undefined && p.server !== undefined && !p.server.proc.hasExited()) {
        p.side.mem = p.sampler.finish()
      }
    }
  } finally {
    await agent?.close().catch(() => undefined)
    await Promise.all([stopServer(ctx, shoal.server), stopServer(ctx, registry.server)])
  }
  return { blobBytes: blob.size, shoal: shoal.side, registry: registry.side }
}

/**
 * Cold single-flight: `clients` concurrent pulls of one blob the mirror does not have, through a
 * counting TCP proxy between the mirror and the origin. Fresh data dir and fresh proxy per mirror.
 */
export async function runCold(
  ctx: Context,
  kind: 'shoal' | 'registry',
  blob: BlobRef,
  clients: number,
  hash: boolean,
): Promise<ColdSide> {
  const side: ColdSide = { clients: [], sources: {} }
  const proxy = await startCountingProxy(new URL(ctx.origin.base))
  let server: Server | undefined
  let agent: Agent | undefined
  try {
    try {
      server =
        kind === 'shoal'
          ? await startShoal({
              name: 'shoal-cold',
              workDir: ctx.workDir,
              dataDir: join(ctx.workDir, 'shoal-cold-data'),
              upstream: proxy.url,
              logLevel: ctx.shoalLogLevel,
            })
          : await startRegistry({
              name: 'registry-proxy',
              workDir: ctx.workDir,
              dataDir: join(ctx.workDir, 'registry-proxy-data'),
              proxyRemote: proxy.url,
            })
    } catch (err) {
      side.error = `start: ${errText(err)}`
      return side
    }
    const sampler = new RssSampler(server.proc.pid)
    const before = proxy.counts()
    agent = newAgent(clients)
    const url = `${server.base}/v2/${REPO}/blobs/${blob.digest}`
    const timeoutMs = transferTimeoutMs(blob.size * clients)
    const t0 = performance.now()
    const t0Epoch = Date.now()
    const settledPulls = await Promise.allSettled(
      Array.from({ length: clients }, () =>
        pullBlob(url, { dispatcher: agent!, hash, expectBytes: blob.size, timeoutMs }),
      ),
    )
    side.wallMs = performance.now() - t0
    side.originBytesAtEnd = proxy.counts().down - before.down
    const after = await proxy.settle(1500, 60_000)
    side.originBytes = after.down - before.down
    side.settled = after.settled
    side.originConnections = after.connections - before.connections
    side.originRatio = side.originBytes / blob.size
    side.originBusyMs = after.lastDataAt - t0Epoch
    for (const s of settledPulls) {
      let c: ColdClient
      if (s.status === 'fulfilled') {
        const r = s.value
        const digestOk = r.digest === undefined || r.digest === blob.digest
        c = { ok: digestOk, ms: r.ms, ttfbMs: r.ttfbMs, source: r.source, digestOk }
        if (!c.digestOk) c.error = `body digest ${r.digest}`
        const key = r.source ?? '(none)'
        side.sources[key] = (side.sources[key] ?? 0) + 1
      } else {
        c = { ok: false, error: errText(s.reason) }
      }
      side.clients.push(c)
    }
    const failed = side.clients.filter((c) => !c.ok)
    if (failed.length > 0) {
      side.error = `${failed.length}/${clients} clients failed: ${failed[0]?.error ?? ''}`
      side.error += await exitNote(server)
    }
    if (!server.proc.hasExited()) side.mem = sampler.finish()
    ctx.log(
      `  cold ${kind}: ${(side.wallMs / 1000).toFixed(2)} s, origin bytes ${side.originRatio.toFixed(2)}× blob` +
        `${side.settled ? '' : ' (origin link still busy after 60 s)'}, sources ${JSON.stringify(side.sources)}`,
    )
    return side
  } finally {
    await agent?.close().catch(() => undefined)
    await stopServer(ctx, server)
    await proxy.close()
  }
}

export async function runColdBoth(ctx: Context, blob: BlobRef, clients: number, hash: boolean): Promise<ColdResult> {
  // docker-registry first: the origin's page cache is warm for both either way (the blob was just uploaded).
  const registry = await runCold(ctx, 'registry', blob, clients, hash)
  const shoal = await runCold(ctx, 'shoal', blob, clients, hash)
  return { blobBytes: blob.size, clients, hashed: hash, shoal, registry }
}
