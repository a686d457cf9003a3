import { createReadStream } from 'node:fs'
import { MAX_BLOB_BYTES, READ_CHUNK_BYTES } from '../constants.js'
import { ShoalError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Digest } from '../oci/digest.js'
import type { OriginClient, Upstream } from '../origin/client.js'
import { originError } from '../origin/errors.js'
import type { BlobStore } from '../store/store.js'
import { type ByteSource, Transfer } from './transfer.js'

export type BlobSource = 'cache' | 'origin' | 'join'

export interface BlobRequest {
  upstream: Upstream
  /** Repository name as the upstream knows it. */
  name: string
  digest: Digest
  /** Forwarded to the origin instead of the daemon's credentials (private repositories). */
  clientAuthorization?: string | undefined
  signal: AbortSignal
}

/** A blob being served: from the store or from a transfer in flight. Release it when done. */
export interface BlobHandle {
  readonly size: number
  readonly source: BlobSource
  /** Bytes [start, end). */
  stream(start: number, end: number, signal: AbortSignal): AsyncIterable<Uint8Array>
  release(): void
}

export interface BlobServiceInit {
  /** How long a transfer with no client left keeps going before it is cancelled. */
  idleGraceMs?: number
}

export interface BlobServiceComponents {
  store: BlobStore
  origin: OriginClient
  logger: Logger
}

/** One transfer per digest: concurrent requests for an uncached blob share one download. */
export class BlobService {
  private readonly store: BlobStore
  private readonly origin: OriginClient
  private readonly log: Logger
  private readonly transfers = new Map<string, Transfer>()
  private readonly idleGraceMs: number

  constructor(init: BlobServiceInit, components: BlobServiceComponents) {
    this.store = components.store
    this.origin = components.origin
    this.log = components.logger.child({ component: 'blobs' })
    this.idleGraceMs = init.idleGraceMs ?? 2_000
  }

  get activeTransfers(): number {
    return this.transfers.size
  }

  /** Size of a blob without fetching it: the store, a transfer in flight, or a HEAD upstream. */
  async head(req: BlobRequest): Promise<{ size: number; source: BlobSource }> {
    const info = await this.store.stat(req.digest)
    if (info !== undefined) return { size: info.size, source: 'cache' }
    const t = this.transfers.get(req.digest.hex)
    if (t !== undefined && t.status !== 'failed') {
      return { size: await t.sizeKnown, source: 'join' }
    }
    const res = await this.origin.request(req.upstream, {
      method: 'HEAD',
      path: `/v2/${req.name}/blobs/${req.digest.value}`,
      scope: `repository:${req.name}:pull`,
      clientAuthorization: req.clientAuthorization,
      signal: req.signal,
    })
    if (res.status !== 200) throw await originError(res, 'BLOB_UNKNOWN', `blob ${req.digest.value}`)
    await res.body.dump().catch(() => {})
    const size = Number(res.headers['content-length'])
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new ShoalError('UPSTREAM_ERROR', `origin gave no size for ${req.digest.value}`, { status: 502 })
    }
    return { size, source: 'origin' }
  }

  async open(req: BlobRequest): Promise<BlobHandle> {
    const info = await this.store.stat(req.digest)
    if (info !== undefined) {
      this.store.touch(req.digest, info).catch((err: unknown) => this.log.warn({ err: String(err) }, 'touch failed'))
      return this.fileHandle(req.digest, info.size)
    }
    let transfer = this.transfers.get(req.digest.hex)
    let source: BlobSource = 'join'
    if (transfer === undefined || transfer.status === 'failed') {
      transfer = this.startTransfer(req)
      source = 'origin'
    } else if (transfer.status === 'complete') {
      const done = await this.store.stat(req.digest)
      if (done !== undefined) return this.fileHandle(req.digest, done.size)
    }
    transfer.acquire()
    try {
      const size = await raceAbort(transfer.sizeKnown, req.signal)
      const t = transfer
      let released = false
      return {
        size,
        source,
        stream: (start, end, signal) => t.read(start, end, signal),
        release: () => {
          if (released) return
          released = true
          t.release(this.idleGraceMs)
        },
      }
    } catch (err) {
      transfer.release(this.idleGraceMs)
      throw err
    }
  }

  private startTransfer(req: BlobRequest): Transfer {
    const transfer = new Transfer({ digest: req.digest }, { store: this.store, logger: this.log })
    this.transfers.set(req.digest.hex, transfer)
    const source = this.originSource(req)
    transfer
      .run(source)
      .finally(() => {
        if (this.transfers.get(req.digest.hex) === transfer) this.transfers.delete(req.digest.hex)
      })
      .catch((err: unknown) => this.log.error({ err: String(err) }, 'transfer bookkeeping failed'))
    return transfer
  }

  /** The origin as a ByteSource: GET with Range from the resume offset. */
  private originSource(req: BlobRequest): ByteSource {
    const { upstream, name, digest, clientAuthorization } = req
    return {
      name: `origin ${upstream.url.origin}`,
      open: async (offset, signal) => {
        const headers: Record<string, string> = {}
        if (offset > 0) headers.range = `bytes=${offset}-`
        const res = await this.origin.request(upstream, {
          method: 'GET',
          path: `/v2/${name}/blobs/${digest.value}`,
          scope: `repository:${name}:pull`,
          headers,
          clientAuthorization,
          signal,
        })
        let size: number
        let restarted = false
        if (res.status === 200) {
          size = Number(res.headers['content-length'])
          restarted = offset > 0
        } else if (res.status === 206) {
          const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.headers['content-range'] ?? '')
          if (m === null || Number(m[1]) !== offset) {
            await res.body.dump().catch(() => {})
            throw new ShoalError('UPSTREAM_ERROR', `origin sent a bad Content-Range for ${digest.value}`, {
              status: 502,
            })
          }
          size = Number(m[3])
        } else {
          throw await originError(res, 'BLOB_UNKNOWN', `blob ${digest.value}`)
        }
        if (!Number.isSafeInteger(size) || size < 0 || size > MAX_BLOB_BYTES) {
          await res.body.dump().catch(() => {})
          throw new ShoalError('UPSTREAM_ERROR', `origin gave no usable size for ${digest.value}`, { status: 502 })
        }
        return { size, restarted, body: res.body }
      },
    }
  }

  private fileHandle(digest: Digest, size: number): BlobHandle {
    const path = this.store.blobPath(digest)
    return {
      size,
      source: 'cache',
      stream: (start, end) =>
        end <= start
          ? emptyIterable()
          : createReadStream(path, { start, end: end - 1, highWaterMark: READ_CHUNK_BYTES * 4 }),
      release: () => {},
    }
  }

  /** Stops every transfer (shutdown); partial files stay for a resume. */
  abortAll(): void {
    for (const t of this.transfers.values()) t.abort(new ShoalError('ABORTED', 'shutting down'))
  }
}

async function* emptyIterable(): AsyncGenerator<Uint8Array> {}

function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(e)
      },
    )
  })
}
