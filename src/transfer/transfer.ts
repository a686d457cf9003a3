import { createHash, type Hash } from 'node:crypto'
import type { FileHandle } from 'node:fs/promises'
import { CHECKPOINT_BYTES, READ_CHUNK_BYTES } from '../constants.js'
import { abortError, ShoalError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Digest } from '../oci/digest.js'
import { type BlobStore, pieceSizeFor } from '../store/store.js'

/**
 * A source of a blob's bytes from some offset on. The origin is one; swarm peers plug in here.
 */
export interface ByteSource {
  readonly name: string
  /**
   * Opens the blob from `offset`. Resolves once the source answered: with the blob's total size
   * and an async iterable of the bytes from `offset` (or from 0 when `restarted` is set, for a
   * source that ignored the range).
   */
  open(
    offset: number,
    signal: AbortSignal,
  ): Promise<{ size: number; restarted: boolean; body: AsyncIterable<Uint8Array> }>
}

export type TransferState = 'starting' | 'running' | 'complete' | 'failed'

export interface TransferInit {
  digest: Digest
  /** Known in advance for manifests from an index; otherwise learnt from the source. */
  mediaType?: string
  /** Resume attempts after a body broke off mid-way. */
  maxResumes?: number
}

export interface TransferComponents {
  store: BlobStore
  logger: Logger
}

/**
 * One download of one blob into its partial file, shared by every client that wants the blob
 * while it runs (single flight). Clients read the partial file behind the writer; the last byte
 * is held back until the whole blob is verified, so no client ever receives a complete wrong blob.
 */
export class Transfer {
  readonly digest: Digest
  private readonly store: BlobStore
  private readonly log: Logger
  private readonly init: TransferInit
  private readonly controller = new AbortController()
  private state: TransferState = 'starting'
  private size = -1
  /** Bytes [0, written) are in the partial file. */
  private written = 0
  private handle: FileHandle | undefined
  private error: Error | undefined
  private readers = 0
  private readonly waiters = new Set<() => void>()
  private idleTimer: NodeJS.Timeout | undefined
  readonly sizeKnown: Promise<number>
  private resolveSize!: (n: number) => void
  private rejectSize!: (e: Error) => void
  readonly done: Promise<void>
  private resolveDone!: () => void
  private rejectDone!: (e: Error) => void

  constructor(init: TransferInit, components: TransferComponents) {
    this.init = init
    this.digest = init.digest
    this.store = components.store
    this.log = components.logger.child({ digest: init.digest.value })
    this.sizeKnown = new Promise((resolve, reject) => {
      this.resolveSize = resolve
      this.rejectSize = reject
    })
    this.done = new Promise((resolve, reject) => {
      this.resolveDone = resolve
      this.rejectDone = reject
    })
    // Nobody may be awaiting these yet; their failures are reported to readers, not lost.
    this.sizeKnown.catch(() => {})
    this.done.catch(() => {})
  }

  get status(): TransferState {
    return this.state
  }

  get bytesWritten(): number {
    return this.written
  }

  /** Runs the download. Never rejects: failures land in `done`. */
  async run(source: ByteSource): Promise<void> {
    try {
      await this.download(source)
      this.state = 'complete'
      this.resolveDone()
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err))
      this.state = 'failed'
      this.error = e
      this.rejectSize(e)
      this.rejectDone(e)
      this.log.warn({ err: e.message, code: (e as ShoalError).code, written: this.written }, 'transfer failed')
    } finally {
      this.wake()
      if (this.idleTimer !== undefined) clearTimeout(this.idleTimer)
      await this.maybeClose()
    }
  }

  private async download(source: ByteSource): Promise<void> {
    const signal = this.controller.signal
    const maxResumes = this.init.maxResumes ?? 3
    let hasher: Hash | undefined
    let lastCheckpoint = 0
    for (let attempt = 0; ; attempt++) {
      const opened = await source.open(this.written, signal)
      if (this.size === -1) {
        this.size = opened.size
        const partial = await this.store.openPartial(this.digest, this.size)
        this.handle = partial.handle
        this.written = partial.offset
        lastCheckpoint = partial.offset
        if (this.written !== 0 && !opened.restarted) {
          // The partial file is ahead of (or behind) what we asked for: ask again from its end.
          await drain(opened.body)
          this.state = 'running'
          this.resolveSize(this.size)
          hasher = await this.hashPrefix(this.written)
          this.log.info({ offset: this.written, size: this.size }, 'resuming partial blob')
          if (this.written === this.size) break
          attempt--
          continue
        }
        this.state = 'running'
        this.resolveSize(this.size)
      } else if (opened.size !== this.size) {
        throw new ShoalError('SIZE_INVALID', `${source.name} changed the size of ${this.digest.value}`, { status: 502 })
      }
      if (opened.restarted) {
        this.written = 0
        lastCheckpoint = 0
        hasher = undefined
      }
      hasher ??= await this.hashPrefix(this.written)
      const handle = this.handle
      if (handle === undefined) throw new Error('partial file not open')
      try {
        for await (const chunk of opened.body) {
          if (this.written + chunk.byteLength > this.size) {
            throw new ShoalError('SIZE_INVALID', `${source.name} sent more than ${this.size} bytes`, { status: 502 })
          }
          await writeAll(handle, chunk, this.written)
          hasher.update(chunk)
          this.written += chunk.byteLength
          this.wake()
          if (this.written - lastCheckpoint >= CHECKPOINT_BYTES) {
            await handle.datasync()
            await this.store.checkpoint(this.digest, {
              size: this.size,
              pieceSize: pieceSizeFor(this.size),
              offset: this.written,
            })
            lastCheckpoint = this.written
          }
        }
      } catch (err) {
        if (signal.aborted) throw abortError(signal)
        if ((err as ShoalError).code === 'SIZE_INVALID') throw err
        await this.saveProgress()
        if (attempt >= maxResumes) throw err
        this.log.info({ offset: this.written, attempt, err: String(err) }, 'body broke off; resuming with Range')
        continue
      }
      if (this.written < this.size) {
        await this.saveProgress()
        if (attempt >= maxResumes) {
          throw new ShoalError('UPSTREAM_ERROR', `${source.name} ended the body at ${this.written} of ${this.size}`, {
            status: 502,
          })
        }
        this.log.info({ offset: this.written, attempt }, 'short body; resuming with Range')
        continue
      }
      break
    }
    const hex = hasher?.digest('hex')
    if (hex !== this.digest.hex) {
      // Nothing of a wrong blob is kept: the next request starts over.
      await this.store.discardPartial(this.digest).catch(() => {})
      throw new ShoalError('DIGEST_INVALID', `content of ${this.digest.value} does not match its digest`, {
        status: 502,
        detail: { got: `sha256:${hex}` },
      })
    }
    const handle = this.handle
    if (handle === undefined) throw new Error('partial file not open')
    const commitInfo: { size: number; mediaType?: string } = { size: this.size }
    if (this.init.mediaType !== undefined) commitInfo.mediaType = this.init.mediaType
    await this.store.commit(this.digest, handle, commitInfo)
    this.log.info({ size: this.size }, 'blob verified and stored')
  }

  private async saveProgress(): Promise<void> {
    if (this.handle === undefined) return
    try {
      await this.handle.datasync()
      await this.store.checkpoint(this.digest, {
        size: this.size,
        pieceSize: pieceSizeFor(this.size),
        offset: this.written,
      })
    } catch (err) {
      this.log.warn({ err: String(err) }, 'could not record progress')
    }
  }

  /** sha256 state over the partial file's first `length` bytes (after a resume). */
  private async hashPrefix(length: number): Promise<Hash> {
    const hasher = createHash('sha256')
    const handle = this.handle
    if (handle === undefined || length === 0) return hasher
    const buf = Buffer.allocUnsafe(READ_CHUNK_BYTES * 4)
    let pos = 0
    while (pos < length) {
      const { bytesRead } = await handle.read(buf, 0, Math.min(buf.length, length - pos), pos)
      if (bytesRead === 0) throw new Error('partial file shorter than recorded')
      hasher.update(buf.subarray(0, bytesRead))
      pos += bytesRead
    }
    return hasher
  }

  private wake(): void {
    const waiters = [...this.waiters]
    this.waiters.clear()
    for (const w of waiters) w()
  }

  /** How far a reader may read now: the last byte only after verification. */
  private readable(): number {
    if (this.state === 'complete') return this.size
    return Math.min(this.written, Math.max(0, this.size - 1))
  }

  /**
   * Streams bytes [start, end) of the blob as they land. The caller holds a reader slot from
   * `acquire()` for as long as it reads.
   */
  async *read(start: number, end: number, signal: AbortSignal): AsyncGenerator<Buffer> {
    await this.sizeKnown
    let pos = start
    while (pos < end) {
      if (signal.aborted) throw abortError(signal)
      if (this.state === 'failed') throw this.error ?? new Error('transfer failed')
      const limit = Math.min(end, this.readable())
      if (pos >= limit) {
        await this.waitForProgress(signal)
        continue
      }
      const handle = this.handle
      if (handle === undefined) throw new Error('partial file not open')
      const len = Math.min(READ_CHUNK_BYTES, limit - pos)
      const buf = Buffer.allocUnsafe(len)
      const { bytesRead } = await handle.read(buf, 0, len, pos)
      if (bytesRead === 0) throw new Error(`partial file ended early at ${pos}`)
      pos += bytesRead
      yield bytesRead === len ? buf : buf.subarray(0, bytesRead)
    }
  }

  private waitForProgress(signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters.delete(wake)
        reject(abortError(signal))
      }
      const wake = (): void => {
        signal.removeEventListener('abort', onAbort)
        resolve()
      }
      this.waiters.add(wake)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  acquire(): void {
    this.readers++
    if (this.idleTimer !== undefined) {
      clearTimeout(this.idleTimer)
      this.idleTimer = undefined
    }
  }

  /**
   * The last reader leaving an unfinished transfer cancels it after `graceMs` (a client that
   * retries at once finds it still running); the partial file stays for a later resume.
   */
  release(graceMs: number): void {
    this.readers--
    if (this.readers > 0) return
    if (this.state === 'starting' || this.state === 'running') {
      this.idleTimer = setTimeout(() => {
        if (this.readers === 0) {
          this.log.info({ written: this.written }, 'no client left; cancelling transfer')
          this.controller.abort(new ShoalError('ABORTED', 'no client left'))
        }
      }, graceMs)
      this.idleTimer.unref()
    } else {
      this.maybeClose().catch(() => {})
    }
  }

  abort(reason: Error): void {
    this.controller.abort(reason)
  }

  private async maybeClose(): Promise<void> {
    if (this.readers > 0 || this.state === 'starting' || this.state === 'running') return
    const handle = this.handle
    this.handle = undefined
    await handle?.close()
  }
}

async function writeAll(handle: FileHandle, chunk: Uint8Array, position: number): Promise<void> {
  let off = 0
  while (off < chunk.byteLength) {
    const { bytesWritten } = await handle.write(chunk, off, chunk.byteLength - off, position + off)
    off += bytesWritten
  }
}

async function drain(body: AsyncIterable<Uint8Array>): Promise<void> {
  const it = body[Symbol.asyncIterator]()
  await it.return?.()
}
