/**
 * An in-process fake OCI registry (pull API only) with fault switches, for integration tests of
 * the faults a real registry will not produce on demand.
 *
 * It serves `GET/HEAD /v2/`, manifests by tag and digest, blobs (with single-range `Range`
 * support) and, in bearer mode, a token endpoint at `/token` on the same server. Every request is
 * recorded (method, path, Range, Authorization, status, body bytes written) so that tests can
 * assert exactly what the daemon asked the origin for.
 *
 * Faults are rules matched against each request (method and path); a matching rule may answer
 * with a status (503 bursts, 429 + Retry-After), cut the body after K bytes, flip a byte, throttle
 * the body, delay the headers, ignore Range or drop response headers.
 */
import { createHash, randomBytes } from 'node:crypto'
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip'

export function sha256(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

export type AuthMode = 'none' | 'basic' | 'bearer'

export interface FakeOriginOptions {
  /**
   * `none`: everything open. `basic`: Basic credentials checked when sent; private repositories
   * need them. `bearer`: every /v2/ request needs a token from `/token`.
   */
  auth?: AuthMode
  /** username → password. */
  users?: Record<string, string>
  /** Repositories only authenticated users may pull. */
  privateRepos?: string[]
  /** `expires_in` of issued tokens, seconds (default 300). */
  tokenTtlSeconds?: number
  /** The `service` of the bearer challenge (default `fake`). */
  service?: string
}

export interface FaultRule {
  /** Methods the rule applies to (default: all). */
  method?: string | readonly string[]
  /** Exact path, or a pattern tested against the path (default: all paths). */
  path?: string | RegExp
  /** Let this many matching requests through unharmed first (default 0). */
  skip?: number
  /** Apply to this many matching requests, then stop (default: unlimited). */
  times?: number
  /** Answer with this status instead of serving (with `headers` and an OCI error body). */
  status?: number
  /** Extra response headers (e.g. `retry-after`). */
  headers?: Record<string, string>
  /** Wait this long before answering. */
  delayMs?: number
  /** Cut the connection after this many body bytes (Content-Length still announces the whole). */
  truncateAfter?: number
  /** Flip the byte at this offset of the response body. */
  corruptAt?: number
  /** Throttle the body to about this many bytes per second. */
  bytesPerSecond?: number
  /** With `bytesPerSecond`: send this many body bytes at full speed first. */
  slowAfter?: number
  /** Answer a ranged blob GET with 200 and the whole blob. */
  ignoreRange?: boolean
  /** Response headers to leave out (lower case), e.g. `docker-content-digest`. */
  dropHeaders?: readonly string[]
}

export interface Fault {
  readonly rule: FaultRule
  /** Requests this rule was applied to so far. */
  readonly hits: number
  remove(): void
}

export interface RecordedRequest {
  readonly seq: number
  readonly method: string
  /** Path without the query. */
  readonly path: string
  readonly query: URLSearchParams
  readonly headers: IncomingHttpHeaders
  readonly range: string | undefined
  readonly authorization: string | undefined
  /** Set when the response headers are written. */
  status: number
  /** Body bytes written to the socket so far. */
  bytesSent: number
  /** The response ended normally (false while in flight or when it was cut). */
  complete: boolean
  /** The connection closed before the response ended (cut by the fault or by the client). */
  aborted: boolean
  readonly startedAt: number
  finishedAt: number | undefined
  /** Bearer mode: the user the token was issued to / Basic mode: the authenticated user. */
  user: string | undefined
}

interface ActiveFault {
  rule: FaultRule
  seen: number
  hits: number
}

interface Effect {
  status?: number
  headers: Record<string, string>
  delayMs?: number
  truncateAfter?: number
  corruptAt?: number
  bytesPerSecond?: number
  slowAfter?: number
  ignoreRange?: boolean
  dropHeaders: Set<string>
}

interface Token {
  user: string | undefined
  repos: Set<string>
  expiresAt: number
}

interface Repo {
  blobs: Map<string, Buffer>
  manifests: Map<string, { body: Buffer; mediaType: string }>
  tags: Map<string, string>
}

interface Identity {
  /** Valid credentials (or a valid token) were presented. */
  user: string | undefined
  /** Credentials or a token were presented but are not valid. */
  invalid: boolean
  token: Token | undefined
}

const ROUTE = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/

export class FakeOrigin {
  readonly options: Required<Omit<FakeOriginOptions, 'privateRepos' | 'users'>> & {
    users: Record<string, string>
    privateRepos: Set<string>
  }
  readonly requests: RecordedRequest[] = []
  private readonly server: Server
  private readonly sockets = new Set<Socket>()
  private readonly repos = new Map<string, Repo>()
  private faults: ActiveFault[] = []
  private readonly tokens = new Map<string, Token>()
  private port = 0
  private seq = 0
  private stopped = false

  private constructor(options: FakeOriginOptions) {
    this.options = {
      auth: options.auth ?? 'none',
      users: options.users ?? {},
      privateRepos: new Set(options.privateRepos ?? []),
      tokenTtlSeconds: options.tokenTtlSeconds ?? 300,
      service: options.service ?? 'fake',
    }
    this.server = createServer((req, res) => {
      this.handle(req, res).catch(() => {
        if (!res.headersSent) {
          res.statusCode = 500
          res.end()
        } else res.destroy()
      })
    })
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s)
      s.on('close', () => this.sockets.delete(s))
    })
  }

  /** Starts a fake origin on 127.0.0.1 (port 0 = any free port). */
  static async start(options: FakeOriginOptions = {}, port = 0): Promise<FakeOrigin> {
    const o = new FakeOrigin(options)
    await o.listen(port)
    return o
  }

  private async listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject)
        resolve()
      })
    })
    this.port = (this.server.address() as AddressInfo).port
  }

  /** `http://127.0.0.1:PORT` */
  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  /** `127.0.0.1:PORT` */
  get host(): string {
    return `127.0.0.1:${this.port}`
  }

  get listeningPort(): number {
    return this.port
  }

  /** Stops listening and cuts every open connection. */
  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    for (const s of this.sockets) s.destroy()
    this.server.closeAllConnections()
    await closed
  }

  // ---- content ----

  private repo(name: string): Repo {
    let r = this.repos.get(name)
    if (r === undefined) {
      r = { blobs: new Map(), manifests: new Map(), tags: new Map() }
      this.repos.set(name, r)
    }
    return r
  }

  /** Adds a blob to a repository; returns its digest. */
  addBlob(repo: string, data: Uint8Array): string {
    const digest = sha256(data)
    this.repo(repo).blobs.set(digest, Buffer.from(data))
    return digest
  }

  /** Adds a random blob of `size` bytes; returns its digest and bytes. */
  addRandomBlob(repo: string, size: number): { digest: string; data: Buffer } {
    const data = randomBytes(size)
    return { digest: this.addBlob(repo, data), data }
  }

  /** Adds a manifest (a JSON-able object or raw bytes) under its digest, and the given tags. */
  addManifest(
    repo: string,
    manifest: unknown,
    mediaType: string,
    tags: readonly string[] = [],
  ): { digest: string; body: Buffer } {
    const body = Buffer.isBuffer(manifest) ? manifest : Buffer.from(JSON.stringify(manifest, null, 2))
    const digest = sha256(body)
    const r = this.repo(repo)
    r.manifests.set(digest, { body, mediaType })
    for (const t of tags) r.tags.set(t, digest)
    return { digest, body }
  }

  /**
   * A small image: an OCI manifest with a config and one layer of `layerSize` random bytes.
   */
  addImage(
    repo: string,
    tag: string,
    layerSize = 64 * 1024,
  ): {
    manifest: { digest: string; body: Buffer }
    config: { digest: string; data: Buffer }
    layer: { digest: string; data: Buffer }
  } {
    const configData = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers' } }))
    const config = { digest: this.addBlob(repo, configData), data: configData }
    const layer = this.addRandomBlob(repo, layerSize)
    const manifest = this.addManifest(
      repo,
      {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, digest: config.digest, size: configData.length },
        layers: [{ mediaType: OCI_LAYER, digest: layer.digest, size: layer.data.length }],
      },
      OCI_MANIFEST,
      [tag],
    )
    return { manifest, config, layer }
  }

  setTag(repo: string, tag: string, digest: string): void {
    this.repo(repo).tags.set(tag, digest)
  }

  // ---- faults ----

  addFault(rule: FaultRule): Fault {
    const active: ActiveFault = { rule, seen: 0, hits: 0 }
    this.faults.push(active)
    return {
      rule,
      get hits() {
        return active.hits
      },
      remove: () => {
        this.faults = this.faults.filter((f) => f !== active)
      },
    }
  }

  clearFaults(): void {
    this.faults = []
  }

  // ---- traffic ----

  /** Recorded requests, optionally only those to `path` (exact or pattern) and with `method`. */
  requestsTo(path?: string | RegExp, method?: string): RecordedRequest[] {
    return this.requests.filter(
      (r) =>
        (path === undefined || (typeof path === 'string' ? r.path === path : path.test(r.path))) &&
        (method === undefined || r.method === method),
    )
  }

  /** Body bytes written for requests to `path`. */
  bytesSentTo(path: string | RegExp, method?: string): number {
    return this.requestsTo(path, method).reduce((n, r) => n + r.bytesSent, 0)
  }

  /** Requests to the token endpoint, optionally for one scope. */
  tokenRequests(scope?: string): RecordedRequest[] {
    return this.requestsTo('/token').filter((r) => scope === undefined || r.query.getAll('scope').includes(scope))
  }

  /** Sequence number of the latest request: later requests have a higher `seq`. */
  get lastSeq(): number {
    return this.seq
  }

  resetTraffic(): void {
    this.requests.length = 0
  }

  // ---- serving ----

  private effectFor(method: string, path: string): Effect {
    const effect: Effect = { headers: {}, dropHeaders: new Set() }
    for (const f of this.faults) {
      const r = f.rule
      if (r.method !== undefined) {
        const methods = typeof r.method === 'string' ? [r.method] : r.method
        if (!methods.includes(method)) continue
      }
      if (r.path !== undefined && (typeof r.path === 'string' ? r.path !== path : !r.path.test(path))) continue
      f.seen++
      if (f.seen <= (r.skip ?? 0)) continue
      if (r.times !== undefined && f.hits >= r.times) continue
      f.hits++
      if (r.status !== undefined) effect.status = r.status
      Object.assign(effect.headers, r.headers ?? {})
      if (r.delayMs !== undefined) effect.delayMs = r.delayMs
      if (r.truncateAfter !== undefined) effect.truncateAfter = r.truncateAfter
      if (r.corruptAt !== undefined) effect.corruptAt = r.corruptAt
      if (r.bytesPerSecond !== undefined) effect.bytesPerSecond = r.bytesPerSecond
      if (r.slowAfter !== undefined) effect.slowAfter = r.slowAfter
      if (r.ignoreRange === true) effect.ignoreRange = true
      for (const h of r.dropHeaders ?? []) effect.dropHeaders.add(h.toLowerCase())
    }
    return effect
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake.invalid')
    const method = req.method ?? 'GET'
    const rec: RecordedRequest = {
      seq: ++this.seq,
      method,
      path: url.pathname,
      query: url.searchParams,
      headers: req.headers,
      range: req.headers.range,
      authorization: req.headers.authorization,
      status: 0,
      bytesSent: 0,
      complete: false,
      aborted: false,
      startedAt: Date.now(),
      finishedAt: undefined,
      user: undefined,
    }
    this.requests.push(rec)
    res.on('finish', () => {
      rec.complete = true
      rec.finishedAt = Date.now()
    })
    res.on('close', () => {
      if (!rec.complete) {
        rec.aborted = true
        rec.finishedAt = Date.now()
      }
    })
    req.resume()

    const effect = this.effectFor(method, url.pathname)
    if (effect.delayMs !== undefined) await sleep(effect.delayMs)
    if (res.destroyed) return
    if (effect.status !== undefined) {
      this.sendError(res, rec, effect.status, 'UNAVAILABLE', `fault: status ${effect.status}`, effect.headers)
      return
    }

    if (url.pathname === '/token') {
      this.token(req, res, rec, url)
      return
    }
    if (method !== 'GET' && method !== 'HEAD') {
      this.sendError(res, rec, 405, 'UNSUPPORTED', 'read-only fake', {})
      return
    }
    if (url.pathname === '/v2/' || url.pathname === '/v2') {
      const id = this.identify(req)
      rec.user = id.user
      if (!this.allowed(id, undefined)) {
        this.challenge(res, rec, undefined)
        return
      }
      this.send(req, res, rec, 200, { 'content-type': 'application/json' }, Buffer.from('{}'), effect)
      return
    }
    const m = ROUTE.exec(url.pathname)
    if (m === null || m[1] === undefined || m[2] === undefined || m[3] === undefined) {
      this.sendError(res, rec, 404, 'NAME_UNKNOWN', 'no such route', {})
      return
    }
    const [, name, kind, ref] = m
    const id = this.identify(req)
    rec.user = id.user
    if (!this.allowed(id, name)) {
      this.challenge(res, rec, name)
      return
    }
    const repo = this.repos.get(name)
    if (repo === undefined) {
      this.sendError(res, rec, 404, 'NAME_UNKNOWN', `repository ${name} not known`, {})
      return
    }
    if (kind === 'manifests') {
      const digest = ref.startsWith('sha256:') ? ref : repo.tags.get(ref)
      const man = digest === undefined ? undefined : repo.manifests.get(digest)
      if (digest === undefined || man === undefined) {
        this.sendError(res, rec, 404, 'MANIFEST_UNKNOWN', `manifest ${ref} unknown`, {})
        return
      }
      this.send(
        req,
        res,
        rec,
        200,
        { 'content-type': man.mediaType, 'docker-content-digest': digest, etag: `"${digest}"` },
        man.body,
        effect,
      )
      return
    }
    const blob = repo.blobs.get(ref)
    if (blob === undefined) {
      this.sendError(res, rec, 404, 'BLOB_UNKNOWN', `blob ${ref} unknown`, {})
      return
    }
    const headers: Record<string, string> = {
      'content-type': 'application/octet-stream',
      'docker-content-digest': ref,
      'accept-ranges': 'bytes',
    }
    const range =
      effect.ignoreRange === true || method === 'HEAD' ? undefined : parseRange(req.headers.range, blob.length)
    if (range === 'unsatisfiable') {
      this.sendError(res, rec, 416, 'RANGE_INVALID', 'range not satisfiable', {
        'content-range': `bytes */${blob.length}`,
      })
      return
    }
    if (range !== undefined) {
      headers['content-range'] = `bytes ${range.start}-${range.end - 1}/${blob.length}`
      this.send(req, res, rec, 206, headers, blob.subarray(range.start, range.end), effect)
      return
    }
    this.send(req, res, rec, 200, headers, blob, effect)
  }

  private identify(req: IncomingMessage): Identity {
    const h = req.headers.authorization
    if (h === undefined) return { user: undefined, invalid: false, token: undefined }
    const basic = /^Basic\s+(\S+)$/i.exec(h)
    if (basic?.[1] !== undefined) {
      const user = this.checkBasic(basic[1])
      return { user, invalid: user === undefined, token: undefined }
    }
    const bearer = /^Bearer\s+(\S+)$/i.exec(h)
    if (bearer?.[1] !== undefined) {
      const token = this.tokens.get(bearer[1])
      if (token === undefined || token.expiresAt <= Date.now())
        return { user: undefined, invalid: true, token: undefined }
      return { user: token.user, invalid: false, token }
    }
    return { user: undefined, invalid: true, token: undefined }
  }

  private checkBasic(b64: string): string | undefined {
    const decoded = Buffer.from(b64, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon <= 0) return undefined
    const user = decoded.slice(0, colon)
    const pass = decoded.slice(colon + 1)
    return Object.hasOwn(this.options.users, user) && this.options.users[user] === pass ? user : undefined
  }

  /** May this identity pull `repo` (or, undefined, reach `/v2/`)? */
  private allowed(id: Identity, repo: string | undefined): boolean {
    switch (this.options.auth) {
      case 'none':
        return true
      case 'basic':
        if (id.invalid || id.token !== undefined) return false
        if (repo === undefined) return true
        return !this.options.privateRepos.has(repo) || id.user !== undefined
      case 'bearer':
        if (id.token === undefined) return false
        return repo === undefined || id.token.repos.has(repo)
    }
  }

  private challenge(res: ServerResponse, rec: RecordedRequest, repo: string | undefined): void {
    let value: string
    if (this.options.auth === 'bearer') {
      value = `Bearer realm="${this.url}/token",service="${this.options.service}"`
      if (repo !== undefined) value += `,scope="repository:${repo}:pull"`
    } else {
      value = 'Basic realm="fake"'
    }
    this.sendError(res, rec, 401, 'UNAUTHORIZED', 'authentication required', { 'www-authenticate': value })
  }

  private token(req: IncomingMessage, res: ServerResponse, rec: RecordedRequest, url: URL): void {
    let user: string | undefined
    const h = req.headers.authorization
    if (h !== undefined) {
      const basic = /^Basic\s+(\S+)$/i.exec(h)
      user = basic?.[1] === undefined ? undefined : this.checkBasic(basic[1])
      if (user === undefined) {
        this.sendError(res, rec, 401, 'UNAUTHORIZED', 'bad credentials', {})
        return
      }
    }
    rec.user = user
    const repos = new Set<string>()
    for (const scope of url.searchParams.getAll('scope')) {
      const m = /^repository:([^:]+):(.+)$/.exec(scope)
      if (m?.[1] === undefined || m[2] === undefined) continue
      if (!m[2].split(',').includes('pull')) continue
      if (!this.options.privateRepos.has(m[1]) || user !== undefined) repos.add(m[1])
    }
    const token = `tok-${this.seq}-${randomBytes(8).toString('hex')}`
    this.tokens.set(token, { user, repos, expiresAt: Date.now() + this.options.tokenTtlSeconds * 1000 })
    const body = Buffer.from(
      JSON.stringify({
        token,
        access_token: token,
        expires_in: this.options.tokenTtlSeconds,
        issued_at: new Date().toISOString(),
      }),
    )
    rec.status = 200
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
    rec.bytesSent = body.length
    res.end(body)
  }

  private sendError(
    res: ServerResponse,
    rec: RecordedRequest,
    status: number,
    code: string,
    message: string,
    headers: Record<string, string>,
  ): void {
    const body = Buffer.from(JSON.stringify({ errors: [{ code, message, detail: null }] }))
    rec.status = status
    res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': body.length })
    if (rec.method === 'HEAD') {
      res.end()
      return
    }
    rec.bytesSent = body.length
    res.end(body)
  }

  private send(
    req: IncomingMessage,
    res: ServerResponse,
    rec: RecordedRequest,
    status: number,
    headers: Record<string, string>,
    body: Buffer,
    effect: Effect,
  ): void {
    const out: Record<string, string | number> = { 'content-length': body.length }
    for (const [k, v] of Object.entries(headers)) if (!effect.dropHeaders.has(k)) out[k] = v
    for (const [k, v] of Object.entries(effect.headers)) out[k] = v
    for (const k of effect.dropHeaders) delete out[k]
    rec.status = status
    res.writeHead(status, out)
    if (req.method === 'HEAD') {
      res.end()
      return
    }
    this.writeBody(res, rec, body, effect).catch(() => res.destroy())
  }

  private async writeBody(res: ServerResponse, rec: RecordedRequest, body: Buffer, effect: Effect): Promise<void> {
    let data = body
    if (effect.corruptAt !== undefined && data.length > 0) {
      data = Buffer.from(body)
      const i = Math.min(effect.corruptAt, data.length - 1)
      data[i] = (data[i] ?? 0) ^ 0xff
    }
    const limit = effect.truncateAfter === undefined ? data.length : Math.min(effect.truncateAfter, data.length)
    const bps = effect.bytesPerSecond
    const slowChunk = bps === undefined ? 256 * 1024 : Math.max(1024, Math.min(64 * 1024, Math.floor(bps / 20)))
    const slowFrom = bps === undefined ? limit : (effect.slowAfter ?? 0)
    let off = 0
    let wake: (() => void) | undefined
    const onClose = (): void => wake?.()
    res.on('close', onClose)
    try {
      while (off < limit) {
        if (res.destroyed) return
        const slow = off >= slowFrom
        const n = slow ? Math.min(slowChunk, limit - off) : Math.min(256 * 1024, slowFrom - off, limit - off)
        const chunk = data.subarray(off, off + n)
        off += n
        // Wait for the bytes to reach the socket (or the connection to close): the cut point of
        // a truncation is then exact, and a throttled body really is throttled.
        await new Promise<void>((resolve) => {
          wake = resolve
          res.write(chunk, () => resolve())
        })
        wake = undefined
        if (res.destroyed) return
        rec.bytesSent += n
        if (bps !== undefined && slow && off < limit) await sleep(Math.round((n / bps) * 1000))
      }
    } finally {
      res.off('close', onClose)
    }
    if (res.destroyed) return
    if (limit < data.length) {
      res.destroy()
      return
    }
    res.end()
  }
}

function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (m === null) return undefined
  const [, a = '', b = ''] = m
  if (a === '' && b === '') return undefined
  if (a === '') {
    const n = Number(b)
    if (n === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - n), end: size }
  }
  const start = Number(a)
  const last = b === '' ? size - 1 : Math.min(Number(b), size - 1)
  if (start >= size || last < start) return 'unsatisfiable'
  return { start, end: last + 1 }
}
