/**
 * The lab's synthetic image: L layers of random content (uncompressed ustar, one file each, sized
 * so the layers add up to exactly the requested size), a config whose diff_ids are the layer
 * digests, and an OCI manifest, written as an OCI image layout and pushed with skopeo.
 */
import { createHash, randomFillSync } from 'node:crypto'
import { mkdir, open, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export const MiB = 1024 * 1024
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
const OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar'

export const POLICY_ACCEPT_ANYTHING = JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] })

export interface Blob {
  digest: string
  size: number
}

export interface LabImage {
  dir: string
  tag: string
  manifest: Blob
  config: Blob
  layers: Blob[]
  /** Bytes of the config and the layers: what a pull must move (the manifest is ~1 KiB more). */
  size: number
}

function tarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(512, 0)
  const octal = (v: number, w: number): string => `${v.toString(8).padStart(w - 1, '0')}\0`
  h.write(name, 0, 100, 'utf8')
  h.write(octal(0o644, 8), 100, 8, 'ascii')
  h.write(octal(0, 8), 108, 8, 'ascii')
  h.write(octal(0, 8), 116, 8, 'ascii')
  h.write(octal(size, 12), 124, 12, 'ascii')
  h.write(octal(1_700_000_000, 12), 136, 12, 'ascii')
  h.write('        ', 148, 8, 'ascii')
  h.write('0', 156, 1, 'ascii')
  h.write('ustar\0', 257, 6, 'ascii')
  h.write('00', 263, 2, 'ascii')
  let sum = 0
  for (const b of h) sum += b
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii')
  return h
}

/** A layer blob of exactly `blobBytes` (a multiple of 512, ≥ 2048): one random file in a ustar. */
async function writeLayer(blobsDir: string, name: string, blobBytes: number): Promise<Blob> {
  const content = blobBytes - 1536
  const hash = createHash('sha256')
  const tmp = join(blobsDir, `.tmp-${name}`)
  const fh = await open(tmp, 'w')
  try {
    const put = async (buf: Buffer): Promise<void> => {
      hash.update(buf)
      let off = 0
      while (off < buf.length) off += (await fh.write(buf, off, buf.length - off)).bytesWritten
    }
    await put(tarHeader(name, content))
    const chunk = Buffer.allocUnsafe(MiB)
    let left = content
    while (left > 0) {
      const n = Math.min(MiB, left)
      randomFillSync(chunk, 0, n)
      await put(chunk.subarray(0, n))
      left -= n
    }
    await put(Buffer.alloc(1024, 0))
  } finally {
    await fh.close()
  }
  const hex = hash.digest('hex')
  await rename(tmp, join(blobsDir, hex))
  return { digest: `sha256:${hex}`, size: blobBytes }
}

async function writeJsonBlob(blobsDir: string, doc: unknown): Promise<Blob> {
  const buf = Buffer.from(JSON.stringify(doc))
  const hex = createHash('sha256').update(buf).digest('hex')
  await writeFile(join(blobsDir, hex), buf)
  return { digest: `sha256:${hex}`, size: buf.length }
}

/** Builds an image of `totalBytes` in `layers` layers (content unique to this call). */
export async function buildImage(dir: string, totalBytes: number, layers: number, tag = 'v1'): Promise<LabImage> {
  const per = Math.floor(totalBytes / layers / 512) * 512
  if (per < 4096) throw new Error(`image too small for ${layers} layers`)
  const blobsDir = join(dir, 'blobs', 'sha256')
  await mkdir(blobsDir, { recursive: true })
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  const nonce = `${Date.now().toString(36)}-${process.pid}`
  const blobs: Blob[] = []
  for (let i = 0; i < layers; i++) {
    const size = i === layers - 1 ? per + Math.floor((totalBytes - per * layers) / 512) * 512 : per
    blobs.push(await writeLayer(blobsDir, `lab-${nonce}-l${i}.bin`, size))
  }
  const config = await writeJsonBlob(blobsDir, {
    created: '2024-01-01T00:00:00Z',
    architecture: 'amd64',
    os: 'linux',
    config: { Cmd: ['/bin/true'], Labels: { 'dev.shoal.lab': nonce } },
    rootfs: { type: 'layers', diff_ids: blobs.map((b) => b.digest) },
  })
  const manifest = await writeJsonBlob(blobsDir, {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, ...config },
    layers: blobs.map((b) => ({ mediaType: OCI_LAYER_TAR, ...b })),
  })
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: OCI_MANIFEST, ...manifest, annotations: { 'org.opencontainers.image.ref.name': tag } }],
    }),
  )
  const size = config.size + blobs.reduce((a, b) => a + b.size, 0)
  return { dir, tag, manifest, config, layers: blobs, size }
}
