import { statfs } from 'node:fs/promises'
import type { Logger } from '../log.js'
import { parseDigest } from '../oci/digest.js'
import type { BlobStore } from './store.js'

/** A disk quota: bytes, or a share of the data dir's volume. */
export type Quota = { bytes: number } | { percent: number }

export interface GcInit {
  dataDir: string
  quota: Quota | undefined
  intervalMs: number
}

export interface GcComponents {
  store: BlobStore
  logger: Logger
  /** Blobs being served or downloaded right now are never collected. */
  inUse(hex: string): boolean
  /** Called after a blob is deleted (the swarm stops providing it). */
  onDelete?(digest: string): void
}

export interface GcResult {
  deleted: number
  /** Partial downloads removed (no transfer of them running, least recently written first). */
  partialsDeleted: number
  freedBytes: number
  usedBytes: number
  quotaBytes: number | undefined
}

/** LRU garbage collection by last access, down to the quota. */
export class GarbageCollector {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<GcResult> | undefined
  runs = 0
  lastResult: GcResult | undefined

  constructor(
    private readonly init: GcInit,
    private readonly c: GcComponents,
  ) {}

  start(): void {
    if (this.init.quota === undefined) return
    this.timer = setInterval(() => {
      this.run().catch((err: unknown) => this.c.logger.warn({ err: String(err) }, 'garbage collection failed'))
    }, this.init.intervalMs)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer)
  }

  async quotaBytes(): Promise<number | undefined> {
    const q = this.init.quota
    if (q === undefined) return undefined
    if ('bytes' in q) return q.bytes
    const fs = await statfs(this.init.dataDir)
    return Math.floor((fs.blocks * fs.bsize * q.percent) / 100)
  }

  /** One collection; concurrent callers share it. */
  run(): Promise<GcResult> {
    this.running ??= this.collect().finally(() => {
      this.running = undefined
    })
    return this.running
  }

  private async collect(): Promise<GcResult> {
    const quota = await this.quotaBytes()
    // Complete blobs by last access and partial downloads by last write, in one LRU order: a
    // partial left by a transfer nobody finished (its clients gave up) would otherwise hold its
    // share of the quota for ever while complete blobs are removed for it.
    const items: { digest: string; size: number; lastAccess: number; partial: boolean }[] = []
    let used = 0
    for await (const { digest, info } of this.c.store.listBlobInfos()) {
      items.push({ digest, size: info.size, lastAccess: info.lastAccess, partial: false })
      used += info.size
    }
    for await (const { digest, size, lastWrite } of this.c.store.listPartials()) {
      items.push({ digest, size, lastAccess: lastWrite, partial: true })
      used += size
    }
    const result: GcResult = { deleted: 0, partialsDeleted: 0, freedBytes: 0, usedBytes: used, quotaBytes: quota }
    this.runs++
    if (quota !== undefined && used > quota) {
      items.sort((a, b) => a.lastAccess - b.lastAccess)
      for (const b of items) {
        if (result.usedBytes <= quota) break
        const digest = parseDigest(b.digest)
        if (this.c.inUse(digest.hex)) continue
        if (b.partial) {
          // Not in use: no transfer of it runs or starts (BlobService holds the digest from the
          // moment it decides to start one).
          await this.c.store.discardPartial(digest)
          result.partialsDeleted++
        } else {
          // Asked again once the record is gone: a request that began to look the blob up while the
          // record was being deleted has pinned it by then (see BlobService.open) and keeps it.
          if (!(await this.c.store.deleteBlob(digest, () => this.c.inUse(digest.hex)))) continue
          this.c.onDelete?.(b.digest)
          result.deleted++
        }
        result.freedBytes += b.size
        result.usedBytes -= b.size
      }
      this.c.logger.info(result, 'garbage collection')
    }
    this.lastResult = result
    return result
  }
}
