import { ShoalError } from '../errors.js'
import type { Logger } from '../log.js'
import { parseDigest } from '../oci/digest.js'
import { type Descriptor, hostPlatform, matchPlatform, parseManifest } from '../oci/manifest.js'
import { parseImageReference, upstreamName } from '../oci/reference.js'
import type { OriginClient } from '../origin/client.js'
import type { RequestContext, Resolver } from '../resolver/resolver.js'
import type { BlobService } from '../transfer/blobs.js'

export interface PreheatRequest {
  ref: string
  /** os/arch[/variant]; default: this machine's. */
  platform?: string | undefined
  allPlatforms?: boolean | undefined
}

export interface PreheatResult {
  ref: string
  manifests: number
  blobs: number
  bytes: number
  /** Blobs by where they came from: already cached, fetched now, or joined a running transfer. */
  sources: Record<string, number>
}

export interface PreheaterComponents {
  origin: OriginClient
  resolver: Resolver
  blobs: BlobService
  logger: Logger
}

/** Blobs fetched at once by one preheat. */
const PREHEAT_CONCURRENCY = 3

/** Fetches every blob of an image into the cache, through the same paths a client pull takes. */
export class Preheater {
  constructor(private readonly c: PreheaterComponents) {}

  async preheat(req: PreheatRequest, signal: AbortSignal): Promise<PreheatResult> {
    const ref = parseImageReference(req.ref, '')
    const upstream = this.c.origin.upstreamFor(ref.registry === '' ? undefined : ref.registry)
    const name = upstreamName(upstream.host, ref.name)
    const ctx: RequestContext = { upstream, name, signal }
    const result: PreheatResult = { ref: req.ref, manifests: 0, blobs: 0, bytes: 0, sources: {} }
    const top = await this.c.resolver.manifest(ctx, ref.digest ?? ref.tag ?? 'latest', true)
    result.manifests++
    const images: Descriptor[] = []
    const parsed = parseManifest(top.body ?? Buffer.alloc(0), top.mediaType)
    if (parsed.kind === 'index') {
      const wanted = parsed.manifests.filter(
        req.allPlatforms === true ? () => true : matchPlatform(req.platform ?? hostPlatform()),
      )
      if (wanted.length === 0) {
        throw new ShoalError('MANIFEST_UNKNOWN', `${req.ref} has no manifest for ${req.platform ?? hostPlatform()}`, {
          status: 404,
        })
      }
      images.push(...wanted)
    }
    const layers: string[] = []
    if (parsed.kind === 'image') layers.push(parsed.config.digest, ...parsed.layers.map((l) => l.digest))
    for (const d of images) {
      const m = await this.c.resolver.manifest(ctx, d.digest, true)
      result.manifests++
      const p = parseManifest(m.body ?? Buffer.alloc(0), m.mediaType)
      if (p.kind === 'image') layers.push(p.config.digest, ...p.layers.map((l) => l.digest))
    }
    const unique = [...new Set(layers)]
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < unique.length) {
        const digest = parseDigest(unique[next++] as string)
        const { size, source } = await this.c.blobs.fetch({ upstream, name, digest, signal })
        result.bytes += size
        result.blobs++
        result.sources[source] = (result.sources[source] ?? 0) + 1
      }
    }
    await Promise.all(Array.from({ length: Math.min(PREHEAT_CONCURRENCY, unique.length) }, worker))
    this.c.logger.info(result, 'preheated')
    return result
  }
}
