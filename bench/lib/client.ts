/**
 * The one blob client used for every server in the benchmark: undici `request`, the body streamed
 * into a sink that counts (and optionally hashes) the bytes.
 */
import { createHash } from 'node:crypto'
import { Agent, type Dispatcher, request } from 'undici'

export interface PullResult {
  bytes: number
  /** From sending the request to the last body byte. */
  ms: number
  ttfbMs: number
  status: number
  /** X-Shoal-Source (cache | origin | join), when the server sent one. */
  source: string | undefined
  /** sha256:… of the body when hashing was asked for. */
  digest: string | undefined
}

export function newAgent(connections: number): Agent {
  return new Agent({ connections, pipelining: 1, keepAliveTimeout: 10_000 })
}

/** Bounded in time: aborted after `timeoutMs` in total. Throws on a non-200 answer or a short body. */
export async function pullBlob(
  url: string,
  opts: { dispatcher: Dispatcher; hash: boolean; expectBytes: number; timeoutMs: number },
): Promise<PullResult> {
  const t0 = performance.now()
  const res = await request(url, {
    dispatcher: opts.dispatcher,
    signal: AbortSignal.timeout(opts.timeoutMs),
    headersTimeout: opts.timeoutMs,
    bodyTimeout: 60_000,
  })
  const ttfbMs = performance.now() - t0
  const sourceHeader = res.headers['x-shoal-source']
  const source = Array.isArray(sourceHeader) ? sourceHeader.join(',') : sourceHeader
  if (res.statusCode !== 200) {
    const text = await res.body.text().catch(() => '')
    throw new Error(`GET ${url}: status ${res.statusCode}: ${text.slice(0, 300)}`)
  }
  const hash = opts.hash ? createHash('sha256') : undefined
  let bytes = 0
  for await (const chunk of res.body) {
    const buf = chunk as Buffer
    bytes += buf.length
    hash?.update(buf)
  }
  const ms = performance.now() - t0
  if (bytes !== opts.expectBytes) throw new Error(`GET ${url}: ${bytes} bytes, want ${opts.expectBytes}`)
  const digest = hash === undefined ? undefined : `sha256:${hash.digest('hex')}`
  return { bytes, ms, ttfbMs, status: res.statusCode, source, digest }
}

export const MIB = 1024 * 1024

export function mibPerSec(bytes: number, ms: number): number {
  return bytes / MIB / (ms / 1000)
}

/** Generous time bound for moving `bytes`: 60 s plus 5 MiB/s. */
export function transferTimeoutMs(bytes: number): number {
  return 60_000 + (bytes / (5 * MIB)) * 1000
}
