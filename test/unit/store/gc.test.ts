/**
 * GarbageCollector on a real DiskStore: complete blobs and partial downloads in one LRU order.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, rm, stat, utimes } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { silentLogger } from '../../../src/log.js'
import { type Digest, parseDigest } from '../../../src/oci/digest.js'
import { GarbageCollector } from '../../../src/store/gc.js'
import { type BlobStore, createStore, pieceSizeFor } from '../../../src/store/store.js'

const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip'
const HOUR = 3_600_000

function digestOf(bytes: Uint8Array): Digest {
  return parseDigest(`sha256:${createHash('sha256').update(bytes).digest('hex')}`)
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}

describe('GarbageCollector', () => {
  let root: string
  let store: BlobStore
  const busy = new Set<string>()

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'shoal-gc-'))
    store = createStore({ dataDir: join(root, 'data') })
    await store.open()
    busy.clear()
  })

  afterEach(async () => {
    await store.close()
    await rm(root, { recursive: true, force: true })
  })

  function collector(quotaBytes: number): GarbageCollector {
    return new GarbageCollector(
      { dataDir: join(root, 'data'), quota: { bytes: quotaBytes }, intervalMs: 60_000 },
      { store, logger: silentLogger(), inUse: (hex) => busy.has(hex) },
    )
  }

  /** A partial download of `size` bytes with progress recorded, last written `ageMs` ago. */
  async function stalePartial(seed: string, size: number, ageMs: number): Promise<Digest> {
    const d = digestOf(Buffer.from(seed))
    const { handle } = await store.openPartial(d, size)
    await handle.close()
    await store.checkpoint(d, { size, pieceSize: pieceSizeFor(size), bitfield: 'AA==', hashes: [null] })
    const at = new Date(Date.now() - ageMs)
    await utimes(store.partialPath(d), at, at)
    return d
  }

  async function blob(text: string): Promise<Digest> {
    const bytes = Buffer.from(text)
    const d = digestOf(bytes)
    await store.putSmall(d, bytes, OCI_LAYER)
    return d
  }

  test('a partial nobody downloads any more counts towards the quota and goes first when older', async () => {
    const kept = await blob('a complete blob, read a moment ago')
    const left = await stalePartial('left behind', 4000, 2 * HOUR)
    const r = await collector(1000).run()
    assert.equal(r.partialsDeleted, 1)
    assert.equal(r.deleted, 0)
    assert.equal(r.freedBytes, 4000)
    assert.equal(await exists(store.partialPath(left)), false)
    assert.equal(await store.partialBytes(), 0)
    assert.ok((await store.stat(kept)) !== undefined)
  })

  test('a partial record whose file is gone goes first, and with it the bytes counted for it', async () => {
    const kept = await blob('a complete blob')
    const phantom = await stalePartial('discarded, then checkpointed once more', 4000, 0)
    await rm(store.partialPath(phantom))
    const r = await collector(1000).run()
    assert.deepEqual([r.partialsDeleted, r.deleted], [1, 0])
    assert.equal(await store.partialBytes(), 0)
    assert.ok((await store.stat(kept)) !== undefined)
  })

  test('a partial whose transfer runs is never removed; a blob read earlier goes instead', async () => {
    const older = await blob('read before the download began')
    const running = await stalePartial('being downloaded', 4000, 2 * HOUR)
    busy.add(running.hex)
    // lastAccess of the blob: now; the partial's last write is older, but it is in use.
    const r = await collector(4000).run()
    assert.equal(r.partialsDeleted, 0)
    assert.equal(r.deleted, 1)
    assert.equal(await store.stat(older), undefined)
    assert.equal(await exists(store.partialPath(running)), true)
    assert.equal(await store.partialBytes(), 4000)
  })

  test('a partial written after a blob was last read stays while the blob goes', async () => {
    const old = await blob('stored, then not read again')
    await sleep(20)
    const fresh = await stalePartial('written just now', 4000, 0)
    const r = await collector(4000).run()
    assert.deepEqual([r.deleted, r.partialsDeleted], [1, 0])
    assert.equal(await store.stat(old), undefined)
    assert.equal(await exists(store.partialPath(fresh)), true)
  })
})
