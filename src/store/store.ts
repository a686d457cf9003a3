import { randomUUID } from 'node:crypto'
import { type FileHandle, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import { PIECE_SIZE_MAX, PIECE_SIZES } from '../constants.js'
import type { Digest } from '../oci/digest.js'

/** What the store knows of a complete, verified blob (layers, configs and manifests alike). */
export interface BlobInfo {
  size: number
  /** Set for manifests: the media type the origin served it with. */
  mediaType?: string
  lastAccess: number
}

/** Progress of an unfinished download, persisted at checkpoints (fsync first, then this). */
export interface PartialInfo {
  size: number
  pieceSize: number
  /** Pieces on disk and fsynced: the wire bitfield, base64. */
  bitfield: string
  /** sha256 of each piece on disk (hex), null where not yet known. */
  hashes: (string | null)[]
}

export interface TagInfo {
  digest: string
  mediaType: string
  size: number
  fetchedAt: number
}

/** Whether the daemon's own credentials (or anonymous access) reach a repository. */
export interface RepoAccess {
  public: boolean
  checkedAt: number
}

/** The content-addressed store under the data dir. Only complete, verified blobs live in blobs/. */
export interface BlobStore {
  open(): Promise<void>
  close(): Promise<void>
  stat(digest: Digest): Promise<BlobInfo | undefined>
  blobPath(digest: Digest): string
  partialPath(digest: Digest): string
  /** Opens (creating or resuming) the partial file of a blob, with the progress recorded for it. */
  openPartial(digest: Digest, size: number): Promise<{ handle: FileHandle; progress: PartialInfo | undefined }>
  checkpoint(digest: Digest, info: PartialInfo): Promise<void>
  /** The partial's bytes were verified: make it a complete blob, atomically. */
  commit(
    digest: Digest,
    handle: FileHandle,
    info: { size: number; mediaType?: string; pieceHashes?: string[] },
  ): Promise<void>
  /** Piece hashes (hex) of a complete blob, when known. */
  pieceTable(digest: Digest): Promise<string[] | undefined>
  setPieceTable(digest: Digest, hashes: string[]): Promise<void>
  discardPartial(digest: Digest): Promise<void>
  /** Writes a small verified blob (a manifest) whole. */
  putSmall(digest: Digest, bytes: Uint8Array, mediaType: string): Promise<void>
  touch(digest: Digest, info: BlobInfo): Promise<void>
  /**
   * Which repositories the origin confirmed hold a blob (`host/name@hex`): content is served
   * only through a repository it belongs to, as a registry does.
   */
  hasLink(key: string): Promise<boolean>
  link(key: string): Promise<void>
  /** Every complete blob's digest (`sha256:<hex>`). */
  listBlobs(): AsyncIterable<string>
  /** Every complete blob with its size and last access (for garbage collection). */
  listBlobInfos(): AsyncIterable<{ digest: string; info: BlobInfo }>
  /** Bytes held by partial downloads. */
  partialBytes(): Promise<number>
  /**
   * Removes what a crash can leave behind with no record to count or find it by: blob files whose
   * record is gone (a crash between a deletion's two steps, or between a commit's rename and its
   * record), partial files with no progress recorded, temporary files. Only while no transfer
   * runs (the daemon calls it at start, after `open`). Returns the files and bytes removed.
   */
  sweepOrphans(): Promise<{ files: number; bytes: number }>
  /** Partial downloads with progress recorded, with when their file was last written (ms). */
  listPartials(): AsyncGenerator<{ digest: string; size: number; lastWrite: number }>
  /**
   * Removes a complete blob (garbage collection): forgets it and removes its file; false when
   * `keep`, asked after the record is gone and before the file goes, wants it kept (the record is
   * written back).
   */
  deleteBlob(digest: Digest, keep?: () => boolean): Promise<boolean>
  getTag(key: string): Promise<TagInfo | undefined>
  setTag(key: string, info: TagInfo): Promise<void>
  getRepoAccess(key: string): Promise<RepoAccess | undefined>
  setRepoAccess(key: string, info: RepoAccess): Promise<void>
}

/** The piece size of a blob of `size` bytes (see `PIECE_SIZES`): the same on every node. */
export function pieceSizeFor(size: number): number {
  for (const rule of PIECE_SIZES) if (size <= rule.upTo) return rule.size
  return PIECE_SIZE_MAX
}

type Meta = BlobInfo | PartialInfo | TagInfo | RepoAccess | string[] | number

export interface StoreInit {
  dataDir: string
}

export function createStore(init: StoreInit): BlobStore {
  return new DiskStore(init)
}

/** putSmall's temporary files: `<hex>.<pid>.<uuid>` in tmp/. */
const TMP_NAME = /^[0-9a-f]{64}\.\d+\.[0-9a-f-]{36}$/

/** Touch updates of last access are written at most this often per blob (GC needs minutes, not ms). */
const TOUCH_INTERVAL_MS = 60_000

class DiskStore implements BlobStore {
  private readonly blobsDir: string
  private readonly partialDir: string
  private readonly tmpDir: string
  private readonly db: Level<string, Meta>

  constructor(init: StoreInit) {
    this.blobsDir = join(init.dataDir, 'blobs', 'sha256')
    this.partialDir = join(init.dataDir, 'partial')
    this.tmpDir = join(init.dataDir, 'tmp')
    this.db = new Level<string, Meta>(join(init.dataDir, 'meta'), { valueEncoding: 'json' })
  }

  async open(): Promise<void> {
    for (const dir of [this.blobsDir, this.partialDir, this.tmpDir]) await mkdir(dir, { recursive: true })
    await this.db.open()
  }

  async close(): Promise<void> {
    await this.db.close()
  }

  blobPath(digest: Digest): string {
    return join(this.blobsDir, digest.hex)
  }

  partialPath(digest: Digest): string {
    return join(this.partialDir, digest.hex)
  }

  async stat(digest: Digest): Promise<BlobInfo | undefined> {
    const info = (await this.db.get(`blob:${digest.hex}`)) as BlobInfo | undefined
    if (info === undefined) return undefined
    try {
      const st = await stat(this.blobPath(digest))
      if (st.size === info.size) return info
    } catch {
      // missing file: fall through and forget it
    }
    await this.db.del(`blob:${digest.hex}`)
    return undefined
  }

  async openPartial(digest: Digest, size: number): Promise<{ handle: FileHandle; progress: PartialInfo | undefined }> {
    const path = this.partialPath(digest)
    const prev = (await this.db.get(`partial:${digest.hex}`)) as PartialInfo | undefined
    let handle: FileHandle
    let progress: PartialInfo | undefined
    try {
      handle = await open(path, 'r+')
      if (
        prev !== undefined &&
        prev.size === size &&
        prev.pieceSize === pieceSizeFor(size) &&
        Array.isArray(prev.hashes)
      ) {
        progress = prev
      }
    } catch {
      handle = await open(path, 'w+')
    }
    if (progress === undefined) {
      // Nothing usable recorded: start over (a sparse file of the final size).
      await handle.truncate(0)
      await this.db.del(`partial:${digest.hex}`)
    }
    await handle.truncate(size)
    return { handle, progress }
  }

  async checkpoint(digest: Digest, info: PartialInfo): Promise<void> {
    await this.db.put(`partial:${digest.hex}`, info)
  }

  async commit(
    digest: Digest,
    handle: FileHandle,
    info: { size: number; mediaType?: string; pieceHashes?: string[] },
  ): Promise<void> {
    await handle.sync()
    await rename(this.partialPath(digest), this.blobPath(digest))
    await fsyncDir(this.blobsDir)
    const blob: BlobInfo = { size: info.size, lastAccess: Date.now() }
    if (info.mediaType !== undefined) blob.mediaType = info.mediaType
    const batch = this.db.batch().put(`blob:${digest.hex}`, blob).del(`partial:${digest.hex}`)
    if (info.pieceHashes !== undefined) batch.put(`table:${digest.hex}`, info.pieceHashes)
    await batch.write()
  }

  async pieceTable(digest: Digest): Promise<string[] | undefined> {
    return (await this.db.get(`table:${digest.hex}`)) as string[] | undefined
  }

  async setPieceTable(digest: Digest, hashes: string[]): Promise<void> {
    await this.db.put(`table:${digest.hex}`, hashes)
  }

  async discardPartial(digest: Digest): Promise<void> {
    await rm(this.partialPath(digest), { force: true })
    await this.db.del(`partial:${digest.hex}`)
  }

  async putSmall(digest: Digest, bytes: Uint8Array, mediaType: string): Promise<void> {
    // Unique per call: concurrent writers of one manifest must not share (and rename away) a file.
    const tmp = join(this.tmpDir, `${digest.hex}.${process.pid}.${randomUUID()}`)
    const fh = await open(tmp, 'w')
    try {
      await fh.writeFile(bytes)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, this.blobPath(digest))
    await this.db.put(`blob:${digest.hex}`, { size: bytes.byteLength, mediaType, lastAccess: Date.now() })
  }

  async touch(digest: Digest, info: BlobInfo): Promise<void> {
    const now = Date.now()
    if (now - info.lastAccess < TOUCH_INTERVAL_MS) return
    await this.db.put(`blob:${digest.hex}`, { ...info, lastAccess: now })
  }

  async hasLink(key: string): Promise<boolean> {
    return (await this.db.get(`link:${key}`)) !== undefined
  }

  async link(key: string): Promise<void> {
    await this.db.put(`link:${key}`, 1)
  }

  async *listBlobs(): AsyncGenerator<string> {
    for await (const key of this.db.keys({ gt: 'blob:', lt: 'blob;' })) yield `sha256:${key.slice(5)}`
  }

  async *listBlobInfos(): AsyncGenerator<{ digest: string; info: BlobInfo }> {
    for await (const [key, value] of this.db.iterator({ gt: 'blob:', lt: 'blob;' })) {
      yield { digest: `sha256:${key.slice(5)}`, info: value as BlobInfo }
    }
  }

  async sweepOrphans(): Promise<{ files: number; bytes: number }> {
    const known = async (prefix: string): Promise<Set<string>> => {
      const keys = new Set<string>()
      for await (const key of this.db.keys({ gt: `${prefix}:`, lt: `${prefix};` }))
        keys.add(key.slice(prefix.length + 1))
      return keys
    }
    const removed = { files: 0, bytes: 0 }
    const sweep = async (dir: string, keep: (name: string) => boolean): Promise<void> => {
      for (const name of await readdir(dir)) {
        if (keep(name)) continue
        const path = join(dir, name)
        const st = await stat(path).catch(() => undefined)
        if (st === undefined || !st.isFile()) continue
        await rm(path, { force: true })
        removed.files++
        removed.bytes += st.blocks * 512
      }
    }
    const blobs = await known('blob')
    const partials = await known('partial')
    // Only names this store writes: anything else under the data dir is not its to remove.
    const hex = /^[0-9a-f]{64}$/
    await sweep(this.blobsDir, (name) => !hex.test(name) || blobs.has(name))
    await sweep(this.partialDir, (name) => !hex.test(name) || partials.has(name))
    await sweep(this.tmpDir, (name) => !TMP_NAME.test(name))
    return removed
  }

  async *listPartials(): AsyncGenerator<{ digest: string; size: number; lastWrite: number }> {
    for await (const [key, value] of this.db.iterator({ gt: 'partial:', lt: 'partial;' })) {
      const hex = key.slice('partial:'.length)
      // A record whose file is gone (a checkpoint that came after its partial was discarded)
      // counts as the oldest: collecting it frees nothing but corrects what is counted as used.
      const lastWrite = await stat(join(this.partialDir, hex)).then(
        (st) => st.mtimeMs,
        () => 0,
      )
      yield { digest: `sha256:${hex}`, size: (value as PartialInfo).size, lastWrite }
    }
  }

  async partialBytes(): Promise<number> {
    let total = 0
    for await (const value of this.db.values({ gt: 'partial:', lt: 'partial;' })) total += (value as PartialInfo).size
    return total
  }

  async deleteBlob(digest: Digest, keep?: () => boolean): Promise<boolean> {
    const [info, table] =
      keep === undefined
        ? [undefined, undefined]
        : await Promise.all([this.db.get(`blob:${digest.hex}`), this.db.get(`table:${digest.hex}`)])
    // Metadata first: a crash in between leaves an orphan file (swept at the next start), never a
    // record without its file.
    await this.db.batch().del(`blob:${digest.hex}`).del(`table:${digest.hex}`).write()
    if (info !== undefined && keep?.() === true) {
      const batch = this.db.batch().put(`blob:${digest.hex}`, info)
      if (table !== undefined) batch.put(`table:${digest.hex}`, table)
      await batch.write()
      return false
    }
    await rm(this.blobPath(digest), { force: true })
    return true
  }

  async getTag(key: string): Promise<TagInfo | undefined> {
    return (await this.db.get(`tag:${key}`)) as TagInfo | undefined
  }

  async setTag(key: string, info: TagInfo): Promise<void> {
    await this.db.put(`tag:${key}`, info)
  }

  async getRepoAccess(key: string): Promise<RepoAccess | undefined> {
    return (await this.db.get(`repo:${key}`)) as RepoAccess | undefined
  }

  async setRepoAccess(key: string, info: RepoAccess): Promise<void> {
    await this.db.put(`repo:${key}`, info)
  }
}

async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined
  try {
    fh = await open(dir, 'r')
    await fh.sync()
  } catch {
    // some filesystems refuse fsync on directories; the rename is still atomic
  } finally {
    await fh?.close()
  }
}
