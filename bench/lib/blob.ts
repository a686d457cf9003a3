import { createHash, randomFillSync } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open } from 'node:fs/promises'
import { request } from 'undici'

const CHUNK = 1024 * 1024

export interface BlobFile {
  path: string
  size: number
  digest: string
}

/** Writes `size` random bytes (fresh random data per 1 MiB chunk) and hashes them on the way. */
export async function generateBlob(path: string, size: number): Promise<BlobFile> {
  const hash = createHash('sha256')
  const buf = Buffer.allocUnsafe(CHUNK)
  const fh = await open(path, 'w')
  try {
    let written = 0
    while (written < size) {
      const n = Math.min(CHUNK, size - written)
      const chunk = buf.subarray(0, n)
      randomFillSync(chunk)
      hash.update(chunk)
      let off = 0
      while (off < n) {
        const { bytesWritten } = await fh.write(chunk, off, n - off)
        if (bytesWritten <= 0) throw new Error(`short write to ${path}`)
        off += bytesWritten
      }
      written += n
    }
  } finally {
    await fh.close()
  }
  return { path, size, digest: `sha256:${hash.digest('hex')}` }
}

/**
 * Monolithic upload through the registry API: POST /v2/<repo>/blobs/uploads/, then
 * PUT <location>&digest=… with the file as the body. Checks the blob with a HEAD afterwards.
 */
export async function uploadBlob(base: string, repo: string, blob: BlobFile): Promise<void> {
  const post = await request(`${base}/v2/${repo}/blobs/uploads/`, {
    method: 'POST',
    headers: { 'content-length': '0' },
    signal: AbortSignal.timeout(30_000),
  })
  await post.body.dump()
  const location = post.headers.location
  if (post.statusCode !== 202 || typeof location !== 'string') {
    throw new Error(`upload POST: status ${post.statusCode}, location ${String(location)}`)
  }
  const url = new URL(location, base)
  url.searchParams.set('digest', blob.digest)
  const timeoutMs = 60_000 + Math.ceil((blob.size / (10 * 1024 * 1024)) * 1000)
  const put = await request(url, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) },
    body: createReadStream(blob.path, { highWaterMark: CHUNK }),
    signal: AbortSignal.timeout(timeoutMs),
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  })
  const text = await put.body.text()
  if (put.statusCode !== 201) throw new Error(`upload PUT: status ${put.statusCode}: ${text.slice(0, 300)}`)
  const head = await request(`${base}/v2/${repo}/blobs/${blob.digest}`, {
    method: 'HEAD',
    signal: AbortSignal.timeout(30_000),
  })
  await head.body.dump()
  const len = Number(head.headers['content-length'])
  if (head.statusCode !== 200 || len !== blob.size) {
    throw new Error(`upload check: HEAD status ${head.statusCode}, content-length ${len}, want ${blob.size}`)
  }
}
