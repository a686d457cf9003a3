/**
 * Synthetic OCI images built in pure Node: random-content ustar layers, gzip (level 0 by default:
 * random bytes do not compress anyway), a config whose rootfs.diff_ids are the digests of the
 * uncompressed tars, an OCI manifest per platform and, for multi-arch, an OCI index. Written as an
 * OCI image layout (oci-layout, index.json, blobs/sha256/…) and pushed with skopeo.
 *
 * Layers are streamed to disk (never buffered whole), so layers of tens of MiB are cheap in memory.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable, Transform, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGzip } from 'node:zlib'
import { runOk } from './proc.js'
import type { Credentials } from './registry.js'

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
export const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip'

/** A containers-policy.json that accepts every image (the tests' images are unsigned). */
export const POLICY_ACCEPT_ANYTHING = JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] })

export const KiB = 1024
export const MiB = 1024 * 1024

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
}

export interface LayerInfo extends Descriptor {
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids entry). */
  diffId: string
  /** Bytes of the uncompressed tar. */
  tarSize: number
}

export interface Platform {
  os: string
  architecture: string
  variant?: string
}

export interface PlatformImage {
  platform: Platform
  manifest: Descriptor
  config: Descriptor
  layers: LayerInfo[]
}

export interface ImageLayout {
  /** The OCI image layout directory. */
  dir: string
  /** The ref name in index.json (`oci:DIR:TAG`). */
  tag: string
  /** What the tag points at: the index (multi-arch) or the single manifest. */
  top: Descriptor
  /** The OCI index of a multi-arch image. */
  index: Descriptor | undefined
  images: PlatformImage[]
}

export interface LayerSpec {
  /** Total bytes of random file content in the layer. */
  bytes: number
  /** How many regular files the content is split into (default 1). */
  files?: number
}

export interface ImageSpec {
  /** Layout dir to create (must not exist or be empty). */
  dir: string
  tag?: string
  /** Layers of every platform image (each platform gets its own random content). */
  layers: LayerSpec[]
  /** One image per platform; more than one (or `index: true`) makes an OCI index. */
  platforms?: Platform[]
  index?: boolean
  /** gzip level 0–9 (default 0). */
  gzipLevel?: number
}

export const AMD64: Platform = { os: 'linux', architecture: 'amd64' }
export const ARM64: Platform = { os: 'linux', architecture: 'arm64', variant: 'v8' }

export function sha256hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex')
}

export function sha256(data: Uint8Array | string): string {
  return `sha256:${sha256hex(data)}`
}

// ---------------------------------------------------------------- tar

function octal(value: number, width: number): string {
  // width-1 octal digits, then NUL
  return `${value.toString(8).padStart(width - 1, '0')}\0`
}

/** A ustar header for a regular file. */
export function tarHeader(name: string, size: number, mode = 0o644, mtime = 1_700_000_000): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar name too long: ${name}`)
  if (size >= 8 ** 11) throw new Error('tar member too large for ustar')
  const h = Buffer.alloc(512, 0)
  h.write(name, 0, 100, 'utf8')
  h.write(octal(mode, 8), 100, 8, 'ascii')
  h.write(octal(0, 8), 108, 8, 'ascii') // uid
  h.write(octal(0, 8), 116, 8, 'ascii') // gid
  h.write(octal(size, 12), 124, 12, 'ascii')
  h.write(octal(mtime, 12), 136, 12, 'ascii')
  h.write('        ', 148, 8, 'ascii') // checksum placeholder: spaces
  h.write('0', 156, 1, 'ascii') // regular file
  h.write('ustar\0', 257, 6, 'ascii')
  h.write('00', 263, 2, 'ascii')
  h.write('root', 265, 32, 'ascii')
  h.write('root', 297, 32, 'ascii')
  let sum = 0
  for (const b of h) sum += b
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii')
  return h
}

/** Streams a ustar archive of `files` regular files holding `bytes` random bytes in all. */
export async function* randomTar(prefix: string, bytes: number, files = 1): AsyncGenerator<Buffer> {
  const n = Math.max(1, files)
  const chunk = 1 * MiB
  for (let i = 0; i < n; i++) {
    const size = Math.floor(bytes / n) + (i < bytes % n ? 1 : 0)
    yield tarHeader(`${prefix}-${i}.bin`, size)
    let left = size
    while (left > 0) {
      const len = Math.min(chunk, left)
      yield randomBytes(len)
      left -= len
    }
    const pad = (512 - (size % 512)) % 512
    if (pad > 0) yield Buffer.alloc(pad, 0)
  }
  yield Buffer.alloc(1024, 0) // end of archive
}

class Hasher extends Transform {
  readonly hash = createHash('sha256')
  bytes = 0
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk)
    this.bytes += chunk.length
    cb(null, chunk)
  }
}

// ---------------------------------------------------------------- layout

async function writeBlob(dir: string, data: Buffer | string, mediaType: string): Promise<Descriptor> {
  const buf = typeof data === 'string' ? Buffer.from(data) : data
  const hex = sha256hex(buf)
  await writeFile(join(dir, 'blobs', 'sha256', hex), buf)
  return { mediaType, digest: `sha256:${hex}`, size: buf.length }
}

/** Writes one random layer (tar → gzip) into the layout's blob dir, streaming. */
async function writeLayer(dir: string, prefix: string, spec: LayerSpec, gzipLevel: number): Promise<LayerInfo> {
  const tmp = join(dir, 'blobs', 'sha256', `.tmp-${randomUUID()}`)
  const tarHash = new Hasher()
  const gzHash = new Hasher()
  await pipeline(
    Readable.from(randomTar(prefix, spec.bytes, spec.files)),
    tarHash,
    createGzip({ level: gzipLevel }),
    gzHash,
    createWriteStream(tmp),
  )
  const hex = gzHash.hash.digest('hex')
  await rename(tmp, join(dir, 'blobs', 'sha256', hex))
  return {
    mediaType: OCI_LAYER_GZIP,
    digest: `sha256:${hex}`,
    size: gzHash.bytes,
    diffId: `sha256:${tarHash.hash.digest('hex')}`,
    tarSize: tarHash.bytes,
  }
}

/** Builds an OCI image layout of random content. Every call makes content no other call has. */
export async function buildImage(spec: ImageSpec): Promise<ImageLayout> {
  const dir = spec.dir
  const tag = spec.tag ?? 'v1'
  const gzipLevel = spec.gzipLevel ?? 0
  const platforms = spec.platforms ?? [AMD64]
  if (platforms.length === 0) throw new Error('no platform')
  const multi = platforms.length > 1 || spec.index === true
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true })
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  const nonce = randomUUID().slice(0, 8)
  const images: PlatformImage[] = []
  for (const platform of platforms) {
    const layers: LayerInfo[] = []
    for (const [i, l] of spec.layers.entries()) {
      layers.push(await writeLayer(dir, `shoal-${nonce}-${platform.architecture}-l${i}`, l, gzipLevel))
    }
    const config = {
      created: '2024-01-01T00:00:00Z',
      architecture: platform.architecture,
      ...(platform.variant === undefined ? {} : { variant: platform.variant }),
      os: platform.os,
      config: {
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        Cmd: ['/bin/true'],
        Labels: { 'dev.shoal.e2e': nonce },
      },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((_, i) => ({ created: '2024-01-01T00:00:00Z', created_by: `shoal e2e layer ${i}` })),
    }
    const configDesc = await writeBlob(dir, JSON.stringify(config), OCI_CONFIG)
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: configDesc,
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    }
    const manifestDesc = await writeBlob(dir, JSON.stringify(manifest), OCI_MANIFEST)
    images.push({ platform, manifest: manifestDesc, config: configDesc, layers })
  }
  let top: Descriptor
  let index: Descriptor | undefined
  const first = images[0]
  if (first === undefined) throw new Error('no image')
  if (multi) {
    const doc = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: images.map((im) => ({ ...im.manifest, platform: im.platform })),
    }
    index = await writeBlob(dir, JSON.stringify(doc), OCI_INDEX)
    top = index
  } else {
    top = first.manifest
  }
  const layoutIndex = {
    schemaVersion: 2,
    manifests: [{ ...top, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  }
  await writeFile(join(dir, 'index.json'), JSON.stringify(layoutIndex))
  return { dir, tag, top, index, images }
}

/** Every blob digest of the image (index, manifests, configs, layers). */
export function allDigests(image: ImageLayout): string[] {
  const out: string[] = []
  if (image.index !== undefined) out.push(image.index.digest)
  for (const im of image.images) {
    out.push(im.manifest.digest, im.config.digest, ...im.layers.map((l) => l.digest))
  }
  return out
}

/** The config and layer digests of one platform image (what a pull stores as blobs). */
export function imageBlobDigests(im: PlatformImage): string[] {
  return [im.config.digest, ...im.layers.map((l) => l.digest)]
}

export function platformImage(image: ImageLayout, architecture: string): PlatformImage {
  const im = image.images.find((i) => i.platform.architecture === architecture)
  if (im === undefined) throw new Error(`image has no ${architecture} platform`)
  return im
}

export interface PushOptions {
  /** `127.0.0.1:PORT` of the registry. */
  registry: string
  repo: string
  tag?: string
  creds?: Credentials
  timeoutMs?: number
}

/**
 * Pushes the layout with `skopeo copy --preserve-digests [--all]` to a plain-HTTP registry; the
 * registry then holds exactly the digests built here.
 */
export async function pushImage(image: ImageLayout, opts: PushOptions): Promise<void> {
  const tag = opts.tag ?? image.tag
  const policy = `${image.dir}.policy.json`
  await writeFile(policy, POLICY_ACCEPT_ANYTHING)
  const args = ['--policy', policy, 'copy', '--quiet', '--dest-tls-verify=false', '--preserve-digests']
  if (image.index !== undefined) args.push('--all')
  if (opts.creds !== undefined) args.push('--dest-creds', `${opts.creds.username}:${opts.creds.password}`)
  else args.push('--dest-no-creds')
  args.push(`oci:${image.dir}:${image.tag}`, `docker://${opts.registry}/${opts.repo}:${tag}`)
  await runOk('skopeo', args, { timeoutMs: opts.timeoutMs ?? 120_000 })
}
