import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pipeline } from 'node:stream/promises'
import {
  AUTH_DECISION_TTL_MS,
  CONFIG_PREFETCH_MAX_BYTES,
  CONFIG_PREFETCH_TIMEOUT_MS,
  CONFIG_PREFETCHES_MAX,
  MAX_HEADER_BYTES,
} from '../constants.js'
import { isShoalError, ShoalError } from '../errors.js'
import type { Logger } from '../log.js'
import { type Digest, parseDigest, truncate } from '../oci/digest.js'
import { parseManifest } from '../oci/manifest.js'
import { isTag, upstreamName, validateName } from '../oci/reference.js'
import type { OriginClient, Upstream } from '../origin/client.js'
import type { ManifestResult, RequestContext, Resolver } from '../resolver/resolver.js'
import type { BlobService } from '../transfer/blobs.js'
import { sendError } from './errors.js'
import { parseRange } from './range.js'
import { sendFile, sendRange } from './send-file.js'

export interface ProxyInit {
  host: string
  port: number
}

export interface ProxyComponents {
  origin: OriginClient
  resolver: Resolver
  blobs: BlobService
  logger: Logger
}

export interface ProxyServer {
  start(): Promise<void>
  stop(): Promise<void>
  /** The bound address (the port is known after start, also when 0 was asked for). */
  address(): { host: string; port: number }
}

const ROUTE = /^\/v2\/(.+)\/(manifests|blobs|tags)\/([^/]+)$/
/** `host`, `host:port` or `[v6]:port`: what containerd puts in `?ns=`. */
const NS = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]{0,252})|\[[0-9a-fA-F:.]+\])(?::\d{1,5})?$/

export function createProxy(init: ProxyInit, components: ProxyComponents): ProxyServer {
  return new RegistryProxy(init, components)
}

class RegistryProxy implements ProxyServer {
  private readonly init: ProxyInit
  private readonly c: ProxyComponents
  private readonly log: Logger
  private server: Server | undefined
  private readonly pings = new Map<string, { status: number; challenge: string | undefined; at: number }>()
  /** Config blobs being prefetched (by digest), and what stops them at shutdown. */
  private readonly prefetches = new Set<string>()
  private readonly background = new AbortController()

  constructor(init: ProxyInit, components: ProxyComponents) {
    this.init = init
    this.c = components
    this.log = components.logger.child({ component: 'proxy' })
  }

  async start(): Promise<void> {
    const server = createServer({ maxHeaderSize: MAX_HEADER_BYTES, requestTimeout: 0 }, (req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.log.error({ err: String(err) }, 'request handler failed')
        if (!res.headersSent) sendError(res, err, req.method === 'HEAD')
        else res.destroy()
      })
    })
    server.keepAliveTimeout = 65_000
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.init.port, this.init.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
  }

  address(): { host: string; port: number } {
    const a = this.server?.address() as AddressInfo | null | undefined
    return { host: this.init.host, port: a?.port ?? this.init.port }
  }

  async stop(): Promise<void> {
    const server = this.server
    if (server === undefined) return
    this.server = undefined
    this.background.abort(new ShoalError('ABORTED', 'shutting down'))
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeIdleConnections()
      // Clients mid-download are cut at shutdown; they retry (and resume) elsewhere or later.
      setTimeout(() => server.closeAllConnections(), 2_000).unref()
    })
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = Date.now()
    const head = req.method === 'HEAD'
    const controller = new AbortController()
    res.on('close', () => {
      if (!res.writableFinished) controller.abort(new ShoalError('ABORTED', 'client went away'))
    })
    res.setHeader('docker-distribution-api-version', 'registry/2.0')
    let outcome: { status: number; code?: string } = { status: 200 }
    try {
      outcome = await this.route(req, res, controller.signal)
    } catch (err) {
      if (controller.signal.aborted) {
        res.destroy()
        outcome = { status: 499, code: 'CLIENT_GONE' }
      } else if (res.headersSent) {
        // Mid-body failure: the client must see a broken transfer, never a short "success".
        this.log.warn({ err: String(err), url: req.url }, 'response failed mid-body')
        res.destroy()
        outcome = { status: res.statusCode, code: 'ABORTED_MID_BODY' }
      } else {
        outcome = sendError(res, err, head)
        if (!isShoalError(err)) this.log.error({ err, url: req.url }, 'internal error')
      }
    }
    this.log.info(
      {
        method: req.method,
        url: truncate(req.url ?? '', 200),
        status: outcome.status,
        code: outcome.code,
        ms: Date.now() - started,
      },
      'request',
    )
  }

  private async route(req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<{ status: number }> {
    const url = new URL(req.url ?? '/', 'http://shoal.invalid')
    const path = url.pathname
    const method = req.method ?? 'GET'
    const ns = url.searchParams.get('ns') ?? undefined
    if (ns !== undefined && !NS.test(ns)) {
      throw new ShoalError('NAME_INVALID', `invalid ns parameter: ${truncate(ns)}`, { status: 400 })
    }
    if (path === '/v2' || path === '/v2/') {
      if (method !== 'GET' && method !== 'HEAD') throw unsupported(method)
      return this.ping(req, res, ns, signal)
    }
    if (!path.startsWith('/v2/')) {
      throw new ShoalError('UNSUPPORTED', 'not a registry API path', { status: 404 })
    }
    if (path.includes('/blobs/uploads')) throw unsupported(method)
    const m = ROUTE.exec(path)
    if (m === null || m[1] === undefined || m[2] === undefined || m[3] === undefined) {
      throw new ShoalError('NAME_INVALID', `unknown registry API path: ${truncate(path)}`, { status: 404 })
    }
    if (method !== 'GET' && method !== 'HEAD') throw unsupported(method)
    const upstream = this.c.origin.upstreamFor(ns)
    const name = upstreamName(upstream.host, validateName(m[1]))
    const ctx: RequestContext = { upstream, name, clientAuthorization: req.headers.authorization, signal }
    const kind = m[2]
    const reference = m[3]
    if (kind === 'blobs') return this.blob(req, res, ctx, reference)
    if (kind === 'manifests') return this.manifest(req, res, ctx, reference)
    throw new ShoalError('UNSUPPORTED', 'tag listing is not served by this mirror', { status: 404 })
  }

  private async ping(
    req: IncomingMessage,
    res: ServerResponse,
    ns: string | undefined,
    signal: AbortSignal,
  ): Promise<{ status: number }> {
    const upstream = this.c.origin.upstreamFor(ns)
    const result = await this.pingUpstream(upstream, req.headers.authorization, signal)
    if (result.status === 401) {
      const headers: Record<string, string> = {}
      if (result.challenge !== undefined) headers['www-authenticate'] = result.challenge
      throw new ShoalError('UNAUTHORIZED', 'authentication required', { status: 401, headers })
    }
    res.setHeader('content-type', 'application/json')
    res.setHeader('content-length', 2)
    res.end(req.method === 'HEAD' ? undefined : '{}')
    return { status: 200 }
  }

  /**
   * `/v2/` answers 200 when the daemon itself can read the upstream; when it cannot (its own
   * credentials missing), the origin's challenge is relayed so that clients send theirs. An
   * unreachable origin is no reason to refuse: cached content may still be served.
   */
  private async pingUpstream(
    upstream: Upstream,
    clientAuthorization: string | undefined,
    signal: AbortSignal,
  ): Promise<{ status: number; challenge: string | undefined }> {
    const key = `${upstream.host} ${clientAuthorization ?? ''}`
    const cached = this.pings.get(key)
    if (cached !== undefined && Date.now() - cached.at < AUTH_DECISION_TTL_MS) return cached
    let result: { status: number; challenge: string | undefined }
    try {
      const r = await this.c.origin.request(upstream, {
        method: 'GET',
        path: '/v2/',
        scope: '',
        clientAuthorization,
        signal,
      })
      await r.body.dump().catch(() => {})
      result = { status: r.status === 401 ? 401 : 200, challenge: r.headers['www-authenticate'] }
    } catch (err) {
      if (signal.aborted) throw err
      return { status: 200, challenge: undefined }
    }
    const entry = { ...result, at: Date.now() }
    this.pings.set(key, entry)
    if (this.pings.size > 1000) {
      const first = this.pings.keys().next().value
      if (first !== undefined) this.pings.delete(first)
    }
    return result
  }

  private async manifest(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    reference: string,
  ): Promise<{ status: number }> {
    if (!isTag(reference)) parseDigest(reference)
    const head = req.method === 'HEAD'
    const m = await this.c.resolver.manifest(ctx, reference, !head)
    res.statusCode = 200
    res.setHeader('content-type', m.mediaType)
    res.setHeader('docker-content-digest', m.digest)
    res.setHeader('etag', `"${m.digest}"`)
    res.setHeader('content-length', m.size)
    res.setHeader('x-shoal-source', m.source)
    if (m.stale) res.setHeader('x-shoal-stale', 'true')
    res.end(head ? undefined : m.body)
    if (!head) this.prefetchConfig(ctx, m)
    return { status: 200 }
  }

  /**
   * Fetches a small image config into the cache in the background, through the same access check
   * and single-flight transfer a client's request takes (so a herd still costs the origin one
   * copy). Best effort: any failure is logged and the client's own request for it decides.
   */
  private prefetchConfig(ctx: RequestContext, m: ManifestResult): void {
    if (m.body === undefined || this.prefetches.size >= CONFIG_PREFETCHES_MAX) return
    let digest: Digest
    try {
      const parsed = parseManifest(m.body, m.mediaType)
      if (parsed.kind !== 'image') return
      const { size } = parsed.config
      if (size < 0 || size > CONFIG_PREFETCH_MAX_BYTES) return
      digest = parseDigest(parsed.config.digest)
    } catch {
      return // the client's own requests will meet whatever is wrong with it
    }
    if (this.prefetches.has(digest.value)) return
    const signal = AbortSignal.any([this.background.signal, AbortSignal.timeout(CONFIG_PREFETCH_TIMEOUT_MS)])
    const bg: RequestContext = { ...ctx, signal }
    this.prefetches.add(digest.value)
    const run = async (): Promise<string> => {
      const access = await this.c.resolver.access(bg, `/v2/${ctx.name}/blobs/${digest.value}`)
      const { upstream, name } = ctx
      const clientAuthorization = access.originAuthorization
      return (await this.c.blobs.fetch({ upstream, name, digest, clientAuthorization, signal })).source
    }
    run()
      .then((source) => this.log.debug({ digest: digest.value, source }, 'config prefetched'))
      .catch((err: unknown) => this.log.debug({ digest: digest.value, err: String(err) }, 'config prefetch failed'))
      .finally(() => this.prefetches.delete(digest.value))
  }

  private async blob(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    reference: string,
  ): Promise<{ status: number }> {
    const digest = parseDigest(reference)
    const access = await this.c.resolver.access(ctx, `/v2/${ctx.name}/blobs/${digest.value}`)
    const blobReq = {
      upstream: ctx.upstream,
      name: ctx.name,
      digest,
      clientAuthorization: access.originAuthorization,
      signal: ctx.signal,
    }
    res.setHeader('docker-content-digest', digest.value)
    res.setHeader('etag', `"${digest.value}"`)
    res.setHeader('accept-ranges', 'bytes')
    res.setHeader('content-type', 'application/octet-stream')
    if (req.method === 'HEAD') {
      const { size, source } = await this.c.blobs.head(blobReq)
      res.setHeader('content-length', size)
      res.setHeader('x-shoal-source', source)
      res.end()
      return { status: 200 }
    }
    const handle = await this.c.blobs.open(blobReq)
    try {
      const range = parseRange(req.headers.range, handle.size)
      let start = 0
      let end = handle.size
      res.setHeader('x-shoal-source', handle.source)
      if (range.kind === 'unsatisfiable') {
        res.setHeader('content-range', `bytes */${handle.size}`)
        throw new ShoalError('RANGE_INVALID', `range ${truncate(req.headers.range ?? '')} not satisfiable`, {
          status: 416,
          headers: { 'content-range': `bytes */${handle.size}` },
        })
      }
      if (range.kind === 'partial') {
        start = range.start
        end = range.end
        res.statusCode = 206
        res.setHeader('content-range', `bytes ${start}-${end - 1}/${handle.size}`)
      }
      res.setHeader('content-length', end - start)
      if (handle.path !== undefined) {
        this.c.blobs.countCacheBytes(await sendFile(res, handle.path, start, end, ctx.signal))
      } else if (handle.reader !== undefined) {
        // The transfer's bytes as they land, or — when the disk is full — the rest straight from
        // the origin, from where the transfer stopped: the pull succeeds and nothing is stored.
        // The first read comes before the status line: a transfer that fails early (the
        // origin's 404, 429, 5xx) still becomes a proper error response.
        const progress = { sent: 0 }
        const reader = handle.reader(ctx.signal)
        try {
          await sendRange(res, reader, start, end, ctx.signal, progress)
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
          if (!res.headersSent) res.setHeader('x-shoal-source', 'passthrough')
          await pipeline(await this.c.blobs.passthrough(blobReq, start + progress.sent, end), res, {
            signal: ctx.signal,
          })
        } finally {
          await reader.close()
        }
      } else {
        throw new Error(`blob handle ${handle.source} has neither a file nor a reader`)
      }
      return { status: res.statusCode }
    } finally {
      handle.release()
    }
  }
}

function unsupported(method: string): ShoalError {
  return new ShoalError('UNSUPPORTED', `${truncate(method, 20)} is not supported: this mirror is read-only`, {
    status: 405,
    headers: { allow: 'GET, HEAD' },
  })
}
