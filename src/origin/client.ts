import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, type Dispatcher, EnvHttpProxyAgent, request } from 'undici'
import type { DaemonConfig, RegistryConfig } from '../config/config.js'
import {
  ORIGIN_BACKOFF_BASE_MS,
  ORIGIN_BACKOFF_MAX_MS,
  ORIGIN_BODY_TIMEOUT_MS,
  ORIGIN_CONNECTIONS,
  ORIGIN_DOWN_MS,
  ORIGIN_HEADERS_TIMEOUT_MS,
  ORIGIN_MAX_ATTEMPTS,
  ORIGIN_MAX_RETRY_AFTER_MS,
} from '../constants.js'
import { ShoalError } from '../errors.js'
import type { Logger } from '../log.js'
import { canonicalRegistryHost } from '../oci/reference.js'
import { basicAuth, parseChallenge, TokenCache } from './auth.js'
import { type Credentials, readDockerConfig } from './credentials.js'

/** One registry as Shoal talks to it. */
export interface Upstream {
  /** The name clients use (`?ns=`), canonical (`registry-1.docker.io` for Docker Hub). */
  readonly host: string
  /** Base URL requests go to. */
  readonly url: URL
  /** The daemon's own credentials for this registry, if any. */
  readonly credentials: Credentials | undefined
  readonly dispatcher: Dispatcher
}

export interface OriginRequest {
  method: 'GET' | 'HEAD'
  /** Path below the upstream URL, e.g. `/v2/library/alpine/manifests/latest`. */
  path: string
  /** Token scope, e.g. `repository:library/alpine:pull`. */
  scope: string
  headers?: Record<string, string>
  /**
   * The client's own `Authorization`, forwarded verbatim instead of the daemon's credentials
   * (private repositories the daemon has no rights to).
   */
  clientAuthorization?: string | undefined
  signal?: AbortSignal | undefined
}

export interface OriginResponse {
  status: number
  headers: Record<string, string>
  body: Dispatcher.ResponseData['body']
}

/** The only part of Shoal that makes HTTP requests to registries. */
export interface OriginClient {
  upstreamFor(ns: string | undefined): Upstream
  request(upstream: Upstream, req: OriginRequest): Promise<OriginResponse>
  /** Whether the upstream answers `/v2/` at all (any status) within a few seconds; cached 10 s. */
  reachable(upstream: Upstream): Promise<boolean>
  close(): Promise<void>
}

export interface OriginClientInit {
  defaultUpstream: URL
  registries: RegistryConfig[]
  dockerConfig?: string | undefined
  maxAttempts?: number
  backoffBaseMs?: number
  headersTimeoutMs?: number
  bodyTimeoutMs?: number
  /** How long an origin that answered no attempt of a request counts as down (ORIGIN_DOWN_MS). */
  downMs?: number
}

export interface OriginClientComponents {
  logger: Logger
}

const MAX_REDIRECTS = 5

export function originInitFromConfig(config: DaemonConfig): OriginClientInit {
  return {
    defaultUpstream: config.defaultUpstream,
    registries: config.registries,
    dockerConfig: config.dockerConfig,
  }
}

export function createOriginClient(init: OriginClientInit, components: OriginClientComponents): OriginClient {
  return new DefaultOriginClient(init, components)
}

class DefaultOriginClient implements OriginClient {
  private readonly init: OriginClientInit
  private readonly log: Logger
  private readonly upstreams = new Map<string, Upstream>()
  private readonly registries: Map<string, RegistryConfig>
  private readonly dockerCreds: Map<string, Credentials>
  private readonly tokens = new TokenCache()
  /** Registry names that answered with a Basic challenge: their credentials are sent up front. */
  private readonly basicHosts = new Set<string>()
  private readonly defaultHost: string

  constructor(init: OriginClientInit, components: OriginClientComponents) {
    this.init = init
    this.log = components.logger.child({ component: 'origin' })
    this.registries = new Map(init.registries.map((r) => [r.host, r]))
    this.dockerCreds = init.dockerConfig === undefined ? new Map() : readDockerConfig(init.dockerConfig)
    this.defaultHost = canonicalRegistryHost(init.defaultUpstream.host)
  }

  upstreamFor(ns: string | undefined): Upstream {
    const host = ns === undefined || ns === '' ? this.defaultHost : canonicalRegistryHost(ns)
    let up = this.upstreams.get(host)
    if (up !== undefined) return up
    const reg = this.registries.get(host)
    let url: URL
    if (reg !== undefined) url = reg.url
    else if (host === this.defaultHost) url = this.init.defaultUpstream
    else url = new URL(`https://${host}`)
    const credentials =
      reg?.username !== undefined && reg.password !== undefined
        ? { username: reg.username, password: reg.password }
        : (this.dockerCreds.get(host) ?? this.dockerCreds.get(canonicalRegistryHost(url.host)))
    up = { host, url, credentials, dispatcher: makeDispatcher(reg) }
    this.upstreams.set(host, up)
    return up
  }

  async request(upstream: Upstream, req: OriginRequest): Promise<OriginResponse> {
    // An origin that answered nothing to every attempt of a recent request gets one attempt: an
    // edge node whose WAN is gone should not wait out the backoff (or a connect timeout per
    // attempt) for every blob before its peers are asked.
    const down = (this.downUntil.get(upstream.host) ?? 0) > Date.now()
    const attempts = down ? 1 : (this.init.maxAttempts ?? ORIGIN_MAX_ATTEMPTS)
    let lastError: unknown
    for (let attempt = 1; attempt <= attempts; attempt++) {
      let res: OriginResponse
      try {
        res = await this.authorizedRequest(upstream, req)
      } catch (err) {
        if (req.signal?.aborted === true) throw err
        lastError = err
        const url = `${upstream.url.origin}${req.path}`
        if (down) this.log.debug({ err: String(err), url }, 'origin request failed (origin down)')
        else this.log.warn({ err: String(err), url, attempt }, 'origin request failed')
        if (attempt < attempts) await sleep(this.backoff(attempt), undefined, { signal: req.signal })
        continue
      }
      if (this.downUntil.delete(upstream.host)) this.log.info({ upstream: upstream.url.origin }, 'origin answers again')
      const retryable = res.status >= 500 || res.status === 429
      if (!retryable || attempt === attempts) return res
      let wait = this.backoff(attempt)
      const retryAfter = parseRetryAfter(res.headers['retry-after'])
      if (retryAfter !== undefined) {
        if (retryAfter > ORIGIN_MAX_RETRY_AFTER_MS) return res
        wait = Math.max(wait, retryAfter)
      }
      this.log.warn({ status: res.status, url: `${upstream.url.origin}${req.path}`, attempt, wait }, 'origin retry')
      await res.body.dump().catch(() => {})
      await sleep(wait, undefined, { signal: req.signal })
    }
    const downMs = this.init.downMs ?? ORIGIN_DOWN_MS
    if (!down) this.log.warn({ upstream: upstream.url.origin, forMs: downMs }, 'origin down: one attempt per request')
    this.downUntil.set(upstream.host, Date.now() + downMs)
    throw new ShoalError('UPSTREAM_UNREACHABLE', `cannot reach ${upstream.url.origin}: ${String(lastError)}`, {
      cause: lastError,
      status: 502,
    })
  }

  private backoff(attempt: number): number {
    const base = this.init.backoffBaseMs ?? ORIGIN_BACKOFF_BASE_MS
    const exp = Math.min(ORIGIN_BACKOFF_MAX_MS, base * 2 ** (attempt - 1))
    return Math.round(exp / 2 + Math.random() * (exp / 2))
  }

  /** One attempt, with the bearer/basic dance (at most one 401 answered per attempt). */
  private async authorizedRequest(upstream: Upstream, req: OriginRequest): Promise<OriginResponse> {
    if (req.clientAuthorization !== undefined) {
      return this.send(upstream, req, req.clientAuthorization)
    }
    // Tokens carry the rights of the credentials that got them: keyed by the registry *name*
    // (each has its own credentials), never shared between names that point at one URL.
    const tokenKey = `${upstream.host} ${upstream.url.origin} ${req.scope}`
    let authorization: string | undefined
    const token = this.tokens.get(tokenKey)
    if (token !== undefined) authorization = `Bearer ${token}`
    else if (upstream.credentials !== undefined && this.basicHosts.has(upstream.host)) {
      authorization = basicAuth(upstream.credentials.username, upstream.credentials.password)
    }
    const res = await this.send(upstream, req, authorization)
    if (res.status !== 401) return res
    const challenge = parseChallenge(res.headers['www-authenticate'])
    if (challenge === undefined) return res
    let retryAuth: string | undefined
    if (challenge.scheme === 'bearer' && challenge.params.realm !== undefined) {
      const fresh = await this.fetchToken(upstream, challenge.params, req)
      if (fresh === undefined) return res
      this.tokens.set(tokenKey, fresh.token, fresh.ttlMs)
      retryAuth = `Bearer ${fresh.token}`
    } else if (challenge.scheme === 'basic' && upstream.credentials !== undefined) {
      if (this.basicHosts.has(upstream.host) && authorization !== undefined) return res
      this.basicHosts.add(upstream.host)
      retryAuth = basicAuth(upstream.credentials.username, upstream.credentials.password)
    } else {
      return res
    }
    await res.body.dump().catch(() => {})
    return this.send(upstream, req, retryAuth)
  }

  private async fetchToken(
    upstream: Upstream,
    params: Record<string, string>,
    req: OriginRequest,
  ): Promise<{ token: string; ttlMs: number } | undefined> {
    let realm: URL
    try {
      realm = new URL(params.realm ?? '')
    } catch {
      return undefined
    }
    if (params.service !== undefined) realm.searchParams.set('service', params.service)
    realm.searchParams.set('scope', params.scope ?? req.scope)
    const headers: Record<string, string> = { 'user-agent': USER_AGENT }
    if (upstream.credentials !== undefined) {
      headers.authorization = basicAuth(upstream.credentials.username, upstream.credentials.password)
    }
    const res = await request(realm, {
      method: 'GET',
      headers,
      dispatcher: upstream.dispatcher,
      signal: req.signal,
      headersTimeout: this.init.headersTimeoutMs ?? ORIGIN_HEADERS_TIMEOUT_MS,
      bodyTimeout: this.init.bodyTimeoutMs ?? ORIGIN_BODY_TIMEOUT_MS,
    })
    if (res.statusCode !== 200) {
      await res.body.dump().catch(() => {})
      this.log.info({ realm: realm.origin, status: res.statusCode, scope: req.scope }, 'token request refused')
      return undefined
    }
    const text = await res.body.text()
    if (text.length > 1024 * 1024) return undefined
    let doc: { token?: unknown; access_token?: unknown; expires_in?: unknown }
    try {
      doc = JSON.parse(text) as typeof doc
    } catch {
      return undefined
    }
    const token = typeof doc.token === 'string' ? doc.token : doc.access_token
    if (typeof token !== 'string' || token === '') return undefined
    // The spec's default lifetime is 60 s; keep a margin so a token never expires in flight.
    const expiresIn = typeof doc.expires_in === 'number' && doc.expires_in > 0 ? doc.expires_in : 60
    return { token, ttlMs: Math.max(1000, (expiresIn - 10) * 1000) }
  }

  /** Sends one request, following redirects (dropping Authorization when the origin changes). */
  private async send(
    upstream: Upstream,
    req: OriginRequest,
    authorization: string | undefined,
  ): Promise<OriginResponse> {
    let url = new URL(req.path, upstream.url)
    let auth = authorization
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const headers: Record<string, string> = { 'user-agent': USER_AGENT, ...req.headers }
      if (auth !== undefined) headers.authorization = auth
      const res = await request(url, {
        method: req.method,
        headers,
        dispatcher: upstream.dispatcher,
        signal: req.signal,
        headersTimeout: this.init.headersTimeoutMs ?? ORIGIN_HEADERS_TIMEOUT_MS,
        bodyTimeout: this.init.bodyTimeoutMs ?? ORIGIN_BODY_TIMEOUT_MS,
      })
      const location = res.headers.location
      if (res.statusCode >= 300 && res.statusCode < 400 && typeof location === 'string') {
        await res.body.dump().catch(() => {})
        const next = new URL(location, url)
        if (next.origin !== url.origin) auth = undefined
        url = next
        continue
      }
      return { status: res.statusCode, headers: flattenHeaders(res.headers), body: res.body }
    }
    throw new ShoalError('UPSTREAM_ERROR', `too many redirects from ${upstream.url.origin}${req.path}`, { status: 502 })
  }

  private readonly reachability = new Map<string, { ok: boolean; at: number }>()
  /** Upstream host → until when it counts as down (see ORIGIN_DOWN_MS). */
  private readonly downUntil = new Map<string, number>()

  async reachable(upstream: Upstream): Promise<boolean> {
    const cached = this.reachability.get(upstream.host)
    if (cached !== undefined && Date.now() - cached.at < 10_000) return cached.ok
    let ok = false
    try {
      const res = await request(new URL('/v2/', upstream.url), {
        method: 'GET',
        dispatcher: upstream.dispatcher,
        signal: AbortSignal.timeout(3_000),
        headers: { 'user-agent': USER_AGENT },
      })
      await res.body.dump().catch(() => {})
      ok = true
    } catch {
      ok = false
    }
    this.reachability.set(upstream.host, { ok, at: Date.now() })
    return ok
  }

  async close(): Promise<void> {
    await Promise.all([...this.upstreams.values()].map((u) => u.dispatcher.close().catch(() => {})))
    this.upstreams.clear()
  }
}

export const USER_AGENT = 'shoal/0.1'

function makeDispatcher(reg: RegistryConfig | undefined): Dispatcher {
  const tls: { ca?: Buffer; rejectUnauthorized?: boolean } = {}
  if (reg?.caFile !== undefined) tls.ca = readFileSync(reg.caFile)
  if (reg?.insecure === true) tls.rejectUnauthorized = false
  const env = process.env
  const proxied = [env.HTTP_PROXY, env.http_proxy, env.HTTPS_PROXY, env.https_proxy].some(
    (v) => v !== undefined && v !== '',
  )
  const common = { connections: ORIGIN_CONNECTIONS, connect: tls }
  // HTTP(S)_PROXY and NO_PROXY are honoured like curl does; loopback stays direct unless listed.
  return proxied ? new EnvHttpProxyAgent({ ...common, requestTls: tls }) : new Agent(common)
}

function flattenHeaders(h: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue
    out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v
  }
  return out
}

function parseRetryAfter(v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  const secs = Number(v)
  if (Number.isFinite(secs) && secs >= 0) return secs * 1000
  const date = Date.parse(v)
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now())
}
