import { ShoalError } from '../errors.js'
import { isDigest } from './digest.js'
import { DOCKER_LIST, OCI_INDEX } from './media-types.js'

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  platform?: { os?: string; architecture?: string; variant?: string }
}

export type ParsedManifest =
  | { kind: 'index'; manifests: Descriptor[] }
  | { kind: 'image'; config: Descriptor; layers: Descriptor[] }

/** Parses an OCI/Docker index or image manifest (pure; no I/O). */
export function parseManifest(body: Uint8Array, mediaType: string): ParsedManifest {
  let doc: { mediaType?: unknown; manifests?: unknown; config?: unknown; layers?: unknown }
  try {
    doc = JSON.parse(Buffer.from(body).toString('utf8')) as typeof doc
  } catch (err) {
    throw new ShoalError('MANIFEST_INVALID', 'manifest is not JSON', { cause: err })
  }
  const type = typeof doc.mediaType === 'string' ? doc.mediaType : mediaType
  if (type === OCI_INDEX || type === DOCKER_LIST || Array.isArray(doc.manifests)) {
    if (!Array.isArray(doc.manifests)) throw new ShoalError('MANIFEST_INVALID', 'index without manifests')
    return { kind: 'index', manifests: doc.manifests.map(descriptor) }
  }
  if (!Array.isArray(doc.layers)) throw new ShoalError('MANIFEST_INVALID', 'image manifest without layers')
  return { kind: 'image', config: descriptor(doc.config), layers: doc.layers.map(descriptor) }
}

function descriptor(d: unknown): Descriptor {
  const x = d as Partial<Descriptor> | null
  if (x === null || typeof x !== 'object' || typeof x.digest !== 'string' || !isDigest(x.digest)) {
    throw new ShoalError('MANIFEST_INVALID', 'descriptor without a sha256 digest')
  }
  const out: Descriptor = {
    mediaType: typeof x.mediaType === 'string' ? x.mediaType : '',
    digest: x.digest,
    size: typeof x.size === 'number' ? x.size : -1,
  }
  if (x.platform !== undefined && typeof x.platform === 'object' && x.platform !== null) out.platform = x.platform
  return out
}

/** `linux/amd64`, `linux/arm64/v8` → a matcher for index entries. */
export function matchPlatform(wanted: string): (d: Descriptor) => boolean {
  const [os, architecture, variant] = wanted.split('/')
  return (d) =>
    d.platform?.os === os &&
    d.platform?.architecture === architecture &&
    (variant === undefined || d.platform?.variant === variant)
}

/** This machine's platform in OCI terms. */
export function hostPlatform(): string {
  const arch: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ia32: '386',
    s390x: 's390x',
    ppc64: 'ppc64le',
  }
  return `linux/${arch[process.arch] ?? process.arch}`
}
