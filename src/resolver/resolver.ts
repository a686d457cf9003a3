import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { AUTH_DECISION_TTL_MS, MAX_MANIFEST_BYTES } from '../constants.js'
import { isShoalError, ShoalError } from '../errors.js'
import type { Logger } from '../log.js'
import { type Digest, isDigest, parseDigest } from '../oci/digest.js'
import { MANIFEST_ACCEPT, sniffManifestType } from '../oci/media-types.js'
import type { OriginClient, OriginResponse, Upstream } from '../origin/client.js'
import { originError } from '../origin/errors.js'
import type { BlobStore } from '../store/store.js'

/** Who asks for what, as the proxy saw it. */
export interface RequestContext {
  upstream: Upstream
  /** Repository name as the upstream knows it (`library/alpine`). */
  name: string
  /** The client's `Authorization` header, if it sent one. */
  clientAuthorization?: string | undefined
  signal: AbortSignal
}

export interface Access {
  /** What to send the origin for this client: undefined = the daemon's own credentials. */
  originAuthorization: string | undefined
  /** The origin could not be reached; the decision is a remembered one. */
  stale: boolean
  /** The probe's answer, when one was made (status and headers; the body is consumed). */
  probe?: { status: number; headers: Record<string, string> }
}

export interface ManifestResult {
  digest: string
  mediaType: string
  size: number
  /** Present for GET. */
  body?: Buffer
  source: 'cache' | 'origin'
  /** Served from the last known tag because the origin could not be reached. */
  stale: boolean
}

export interface ResolverInit {
  tagTtlMs: number
  authTtlMs?: number
}

export interface ResolverComponents {
  store: BlobStore
  origin: OriginClient
  logger: Logger
}

/** Bounded map of recent decisions; the oldest go first. */
class Recent<V> {
  private readonly map = new Map<string, V>()
  constructor(private readonly max: number) {}
  get(k: string): V | undefined {
    return this.map.get(k)
  }
  set(k: string, v: V): void {
    this.map.delete(k)
    this.map.set(k, v)
    if (this.map.size > this.max) {
      const first = this.map.keys().next().value
      if (first !== undefined) this.map.delete(first)
    }
  }
}

/**
 * Tags → digests (revalidated with the origin, stale only when it is unreachable), manifests,
 * and the access check that keeps private repositories private.
 */
export class Resolver {
  private readonly store: BlobStore
  private readonly origin: OriginClient
  private readonly log: Logger
  private readonly tagTtlMs: number
  private readonly authTtlMs: number
  /** (upstream, repo, sha256(Authorization)) → when the origin last accepted it. */
  private readonly clientDecisions = new Recent<number>(10_000)
  private readonly accessChecks = new Map<string, Promise<Access>>()
  private readonly manifestFetches = new Map<string, Promise<{ body: Buffer; mediaType: string | undefined }>>()

  constructor(init: ResolverInit, components: ResolverComponents) {
    this.store = components.store
    this.origin = components.origin
    this.log = components.logger.child({ component: 'resolver' })
    this.tagTtlMs = init.tagTtlMs
    this.authTtlMs = init.authTtlMs ?? AUTH_DECISION_TTL_MS
  }

  /**
   * May this client read this repository, and with which credentials does Shoal fetch for it?
   * A repository the daemon itself can read is open to every client; otherwise the client's own
   * credentials must be accepted by the origin for that repository (checked there, briefly
   * remembered). `probePath` is what to HEAD upstream when a check is needed; `force` always
   * sends it (tag revalidation).
   */
  async access(ctx: RequestContext, probePath: string, force = false): Promise<Access> {
    // Concurrent first requests for one repository (a pull fetches its layers in parallel) share
    // one check.
    const key = `${ctx.upstream.host}/${ctx.name} ${ctx.clientAuthorization ?? ''} ${force ? probePath : ''}`
    const inflight = this.accessChecks.get(key)
    if (inflight !== undefined) return inflight
    const p = this.checkAccess(ctx, probePath, force)
    this.accessChecks.set(key, p)
    try {
      return await p
    } finally {
      this.accessChecks.delete(key)
    }
  }

  private async checkAccess(ctx: RequestContext, probePath: string, force: boolean): Promise<Access> {
    const repoKey = `${ctx.upstream.host}/${ctx.name}`
    const now = Date.now()
    const known = await this.store.getRepoAccess(repoKey)
    const clientKey =
      ctx.clientAuthorization === undefined
        ? undefined
        : `${repoKey} ${createHash('sha256').update(ctx.clientAuthorization).digest('hex')}`
    const clientAt = clientKey === undefined ? undefined : this.clientDecisions.get(clientKey)
    if (!force) {
      if (known?.public === true && now - known.checkedAt < this.authTtlMs) {
        return { originAuthorization: undefined, stale: false }
      }
      if (clientAt !== undefined && now - clientAt < this.authTtlMs) {
        return { originAuthorization: ctx.clientAuthorization, stale: false }
      }
    }
    const probe = async (auth: string | undefined): Promise<OriginResponse> =>
      this.origin.request(ctx.upstream, {
        method: 'HEAD',
        path: probePath,
        scope: `repository:${ctx.name}:pull`,
        headers: { accept: MANIFEST_ACCEPT },
        clientAuthorization: auth,
        signal: ctx.signal,
      })
    let res: OriginResponse
    try {
      res = await probe(undefined)
    } catch (err) {
      if (!isShoalError(err, 'UPSTREAM_UNREACHABLE')) throw err
      // Offline: fall back on what the origin said last time.
      if (known?.public === true) return { originAuthorization: undefined, stale: true }
      if (clientAt !== undefined) return { originAuthorization: ctx.clientAuthorization, stale: true }
      throw err
    }
    await res.body.dump().catch(() => {})
    if (res.status !== 401 && res.status !== 403) {
      if (res.status < 500 && res.status !== 429) {
        await this.store.setRepoAccess(repoKey, { public: true, checkedAt: now })
      }
      return { originAuthorization: undefined, stale: false, probe: { status: res.status, headers: res.headers } }
    }
    if (known?.public !== false) {
      await this.store.setRepoAccess(repoKey, { public: false, checkedAt: now })
      this.log.info({ repo: repoKey }, 'repository is private to this daemon; clients must authenticate')
    }
    if (ctx.clientAuthorization === undefined || clientKey === undefined) {
      throw await originError(res, 'NAME_UNKNOWN', `repository ${ctx.name}`)
    }
    const res2 = await probe(ctx.clientAuthorization)
    await res2.body.dump().catch(() => {})
    if (res2.status === 401 || res2.status === 403) {
      throw await originError(res2, 'NAME_UNKNOWN', `repository ${ctx.name}`)
    }
    if (res2.status < 500 && res2.status !== 429) this.clientDecisions.set(clientKey, now)
    return {
      originAuthorization: ctx.clientAuthorization,
      stale: false,
      probe: { status: res2.status, headers: res2.headers },
    }
  }

  /** Stores a verified manifest; a full disk is logged, not fatal (the client still gets it). */
  private async putSmall(digest: Digest, body: Buffer, mediaType: string): Promise<void> {
    try {
      await this.store.putSmall(digest, body, mediaType)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
      this.log.warn({ digest: digest.value }, 'disk full: manifest served without being cached')
    }
  }

  /** A manifest by tag or digest. `withBody` for GET. */
  async manifest(ctx: RequestContext, reference: string, withBody: boolean): Promise<ManifestResult> {
    if (isDigest(reference)) return this.manifestByDigest(ctx, parseDigest(reference), withBody, false)
    const tagKey = `${ctx.upstream.host}/${ctx.name}:${reference}`
    const cached = await this.store.getTag(tagKey)
    const fresh = cached !== undefined && Date.now() - cached.fetchedAt < this.tagTtlMs
    const acc = await this.access(ctx, `/v2/${ctx.name}/manifests/${reference}`, !fresh)
    let digest: string
    let stale = false
    const probe = acc.probe
    if (probe === undefined) {
      if (cached === undefined) {
        throw new ShoalError('UPSTREAM_UNREACHABLE', `cannot resolve ${ctx.name}:${reference}: origin unreachable`, {
          status: 503,
        })
      }
      digest = cached.digest
      stale = acc.stale
      if (stale) {
        this.log.warn(
          { tag: tagKey, digest, age: Date.now() - cached.fetchedAt },
          'origin unreachable; serving last known digest',
        )
      }
    } else if (probe.status === 200) {
      const d = probe.headers['docker-content-digest']
      if (d !== undefined && isDigest(d)) {
        digest = d
      } else {
        // A registry that does not name the digest on HEAD: fetch the manifest and hash it.
        const { body } = await this.fetchManifest(ctx, reference, acc.originAuthorization, undefined)
        digest = `sha256:${createHash('sha256').update(body).digest('hex')}`
        const mediaType = probe.headers['content-type'] ?? sniffManifestType(body) ?? 'application/octet-stream'
        await this.putSmall(parseDigest(digest), body, mediaType)
      }
      const mediaType = probe.headers['content-type'] ?? cached?.mediaType ?? ''
      const size = Number(probe.headers['content-length'] ?? cached?.size ?? 0)
      await this.store.setTag(tagKey, { digest, mediaType, size, fetchedAt: Date.now() })
    } else if (probe.status === 404) {
      throw new ShoalError('MANIFEST_UNKNOWN', `manifest ${ctx.name}:${reference} not found upstream`, { status: 404 })
    } else if (probe.status === 429) {
      const headers: Record<string, string> = {}
      if (probe.headers['retry-after'] !== undefined) headers['retry-after'] = probe.headers['retry-after']
      throw new ShoalError('TOOMANYREQUESTS', `origin rate-limited ${ctx.name}:${reference}`, { status: 429, headers })
    } else if (cached !== undefined && probe.status >= 500) {
      digest = cached.digest
      stale = true
      this.log.warn({ tag: tagKey, status: probe.status }, 'origin failing; serving last known digest')
    } else {
      throw new ShoalError('UPSTREAM_ERROR', `origin answered ${probe.status} for ${ctx.name}:${reference}`, {
        status: 502,
      })
    }
    const result = await this.manifestByDigest(ctx, parseDigest(digest), withBody, true, acc)
    result.stale = stale
    return result
  }

  private async manifestByDigest(
    ctx: RequestContext,
    digest: Digest,
    withBody: boolean,
    checked: boolean,
    acc?: Access,
  ): Promise<ManifestResult> {
    const access =
      checked && acc !== undefined ? acc : await this.access(ctx, `/v2/${ctx.name}/manifests/${digest.value}`)
    const info = await this.store.stat(digest)
    const link = `${ctx.upstream.host}/${ctx.name}@${digest.hex}`
    if (info?.mediaType !== undefined) {
      // Served only through a repository the origin said holds it (a tag of it pointed here, or a
      // HEAD by digest answered): rights to one repository do not open another's manifests.
      if (checked && !access.stale) await this.store.link(link)
      else if (!(await this.store.hasLink(link))) {
        if (access.stale) {
          throw new ShoalError(
            'UPSTREAM_UNREACHABLE',
            `cannot confirm ${digest.value} in ${ctx.name}: origin unreachable`,
            {
              status: 503,
            },
          )
        }
        const res = await this.origin.request(ctx.upstream, {
          method: 'HEAD',
          path: `/v2/${ctx.name}/manifests/${digest.value}`,
          scope: `repository:${ctx.name}:pull`,
          headers: { accept: MANIFEST_ACCEPT },
          clientAuthorization: access.originAuthorization,
          signal: ctx.signal,
        })
        if (res.status !== 200) throw await originError(res, 'MANIFEST_UNKNOWN', `manifest ${ctx.name}@${digest.value}`)
        await res.body.dump().catch(() => {})
        await this.store.link(link)
      }
      const result: ManifestResult = {
        digest: digest.value,
        mediaType: info.mediaType,
        size: info.size,
        source: 'cache',
        stale: access.stale,
      }
      if (withBody) result.body = await readFile(this.store.blobPath(digest))
      return result
    }
    if (access.stale) {
      throw new ShoalError('UPSTREAM_UNREACHABLE', `manifest ${digest.value} not cached and origin unreachable`, {
        status: 503,
      })
    }
    const fetched = await this.fetchManifest(ctx, digest.value, access.originAuthorization, digest)
    const body = fetched.body
    const mediaType = fetched.mediaType ?? sniffManifestType(body) ?? 'application/octet-stream'
    await this.putSmall(digest, body, mediaType)
    await this.store.link(link)
    const result: ManifestResult = {
      digest: digest.value,
      mediaType,
      size: body.byteLength,
      source: 'origin',
      stale: false,
    }
    if (withBody) result.body = body
    return result
  }

  /** GET a manifest (bounded size), verified against `digest` when one is given. Single flight. */
  private async fetchManifest(
    ctx: RequestContext,
    reference: string,
    authorization: string | undefined,
    digest: Digest | undefined,
  ): Promise<{ body: Buffer; mediaType: string | undefined }> {
    const key = `${ctx.upstream.host} ${ctx.name} ${reference} ${authorization ?? ''}`
    const inflight = this.manifestFetches.get(key)
    if (inflight !== undefined) return inflight
    const p = (async () => {
      const res = await this.origin.request(ctx.upstream, {
        method: 'GET',
        path: `/v2/${ctx.name}/manifests/${reference}`,
        scope: `repository:${ctx.name}:pull`,
        headers: { accept: MANIFEST_ACCEPT },
        clientAuthorization: authorization,
        signal: ctx.signal,
      })
      if (res.status !== 200) throw await originError(res, 'MANIFEST_UNKNOWN', `manifest ${ctx.name}@${reference}`)
      const declared = Number(res.headers['content-length'] ?? 0)
      if (declared > MAX_MANIFEST_BYTES) {
        await res.body.dump().catch(() => {})
        throw new ShoalError('MANIFEST_INVALID', `manifest ${reference} is larger than ${MAX_MANIFEST_BYTES} bytes`, {
          status: 502,
        })
      }
      const chunks: Buffer[] = []
      let total = 0
      for await (const chunk of res.body) {
        total += (chunk as Buffer).byteLength
        if (total > MAX_MANIFEST_BYTES) {
          res.body.destroy()
          throw new ShoalError('MANIFEST_INVALID', `manifest ${reference} is larger than ${MAX_MANIFEST_BYTES} bytes`, {
            status: 502,
          })
        }
        chunks.push(chunk as Buffer)
      }
      const body = Buffer.concat(chunks)
      if (digest !== undefined) {
        const got = createHash('sha256').update(body).digest('hex')
        if (got !== digest.hex) {
          throw new ShoalError('DIGEST_INVALID', `origin sent a manifest that does not match ${digest.value}`, {
            status: 502,
          })
        }
      }
      const type = res.headers['content-type']?.split(';')[0]?.trim()
      return { body, mediaType: type === '' ? undefined : type }
    })()
    this.manifestFetches.set(key, p)
    try {
      return await p
    } finally {
      this.manifestFetches.delete(key)
    }
  }
}
