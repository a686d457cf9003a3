import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, test } from 'node:test'
import { PIECE_SIZE_MAX, PIECE_SIZE_MIN, PIECE_SIZES } from '../../../src/constants.js'
import { type Digest, parseDigest } from '../../../src/oci/digest.js'
import { type BlobStore, createStore, type PartialInfo, pieceSizeFor } from '../../../src/store/store.js'

function digestOf(bytes: Uint8Array): Digest {
  return parseDigest(`sha256:${createHash('sha256').update(bytes).digest('hex')}`)
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

describe('pieceSizeFor', () => {
  test('1 MiB up to 1 GiB, 4 MiB up to 4 GiB, 16 MiB beyond (the rule of /shoal/pieces/2.0.0)', () => {
    const MiB = 1024 * 1024
    const GiB = 1024 * MiB
    assert.equal(pieceSizeFor(0), MiB)
    assert.equal(pieceSizeFor(1), MiB)
    assert.equal(pieceSizeFor(GiB), MiB)
    assert.equal(pieceSizeFor(GiB + 1), 4 * MiB)
    assert.equal(pieceSizeFor(4 * GiB), 4 * MiB)
    assert.equal(pieceSizeFor(4 * GiB + 1), 16 * MiB)
    assert.equal(pieceSizeFor(1024 ** 4), 16 * MiB)
    assert.equal(PIECE_SIZE_MIN, MiB)
    assert.equal(PIECE_SIZE_MAX, 16 * MiB)
  })

  test('at most 1024 pieces at each step of the rule', () => {
    for (const rule of PIECE_SIZES.slice(0, -1)) {
      assert.equal(Math.ceil(rule.upTo / pieceSizeFor(rule.upTo)), 1024)
    }
  })
})

describe('DiskStore', () => {
  let root: string
  let dataDir: string
  let store: BlobStore
  let closed = false

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'shoal-unit-store-'))
    dataDir = join(root, 'data')
    store = createStore({ dataDir })
    closed = false
    await store.open()
  })

  afterEach(async () => {
    if (!closed) await store.close()
    await rm(root, { recursive: true, force: true })
  })

  async function reopen(): Promise<void> {
    await store.close()
    store = createStore({ dataDir })
    await store.open()
  }

  test('open creates the layout under the data dir', async () => {
    const entries = (await readdir(dataDir)).sort()
    assert.deepEqual(entries, ['blobs', 'meta', 'partial', 'tmp'])
    assert.deepEqual(await readdir(join(dataDir, 'blobs')), ['sha256'])
  })

  test('paths: blobs/sha256/<hex> and partial/<hex>', () => {
    const d = digestOf(Buffer.from('x'))
    assert.equal(store.blobPath(d), join(dataDir, 'blobs', 'sha256', d.hex))
    assert.equal(store.partialPath(d), join(dataDir, 'partial', d.hex))
  })

  test('stat of an unknown blob is undefined', async () => {
    assert.equal(await store.stat(digestOf(Buffer.from('nothing'))), undefined)
  })

  describe('openPartial', () => {
    test('creates a sparse file of the final size with no progress', async () => {
      const d = digestOf(Buffer.from('a'))
      const { handle, progress } = await store.openPartial(d, 12345)
      try {
        assert.equal(progress, undefined)
        assert.equal((await stat(store.partialPath(d))).size, 12345)
        assert.equal(await store.partialBytes(), 0, 'nothing recorded before a checkpoint')
      } finally {
        await handle.close()
      }
    })

    test('resumes the checkpointed progress and keeps the bytes', async () => {
      const size = 3000
      const d = digestOf(Buffer.from('resume'))
      const first = await store.openPartial(d, size)
      await first.handle.write(Buffer.alloc(1000, 7), 0, 1000, 0)
      const info: PartialInfo = {
        size,
        pieceSize: pieceSizeFor(size),
        bitfield: Buffer.from([1]).toString('base64'),
        hashes: ['ab'.repeat(32)],
      }
      await store.checkpoint(d, info)
      await first.handle.close()
      assert.equal(await store.partialBytes(), size)
      await reopen()

      const second = await store.openPartial(d, size)
      try {
        assert.deepEqual(second.progress, info)
        assert.equal((await stat(store.partialPath(d))).size, size)
        const buf = Buffer.alloc(1000)
        await second.handle.read(buf, 0, 1000, 0)
        assert.deepEqual(buf, Buffer.alloc(1000, 7))
      } finally {
        await second.handle.close()
      }
    })

    test('a file longer than the blob is cut back to its size on resume', async () => {
      const size = 100
      const d = digestOf(Buffer.from('long'))
      const first = await store.openPartial(d, size)
      await first.handle.close()
      await store.checkpoint(d, { size, pieceSize: pieceSizeFor(size), bitfield: 'AA==', hashes: [null] })
      await writeFile(store.partialPath(d), Buffer.alloc(500, 1))
      const second = await store.openPartial(d, size)
      try {
        assert.notEqual(second.progress, undefined)
        assert.equal((await stat(store.partialPath(d))).size, size)
      } finally {
        await second.handle.close()
      }
    })

    test('a record for another size starts over: zeroed file of the new size, record dropped', async () => {
      const d = digestOf(Buffer.from('size-changed'))
      const first = await store.openPartial(d, 2000)
      await first.handle.write(Buffer.alloc(2000, 9), 0, 2000, 0)
      await store.checkpoint(d, { size: 2000, pieceSize: pieceSizeFor(2000), bitfield: 'AQ==', hashes: [null] })
      await first.handle.close()

      const second = await store.openPartial(d, 1500)
      try {
        assert.equal(second.progress, undefined)
        const content = await readFile(store.partialPath(d))
        assert.equal(content.length, 1500)
        assert.ok(
          content.every((b) => b === 0),
          'old bytes are not trusted',
        )
        assert.equal(await store.partialBytes(), 0)
      } finally {
        await second.handle.close()
      }
    })

    test('a record with another piece size or without hashes is not trusted', async () => {
      const size = 64
      const d = digestOf(Buffer.from('piece-size'))
      for (const bad of [
        { size, pieceSize: 1024, bitfield: 'AQ==', hashes: [null] },
        { size, pieceSize: pieceSizeFor(size), bitfield: 'AQ==' } as unknown as PartialInfo,
      ]) {
        const first = await store.openPartial(d, size)
        await first.handle.write(Buffer.alloc(size, 3), 0, size, 0)
        await first.handle.close()
        await store.checkpoint(d, bad)
        const second = await store.openPartial(d, size)
        try {
          assert.equal(second.progress, undefined)
          assert.ok((await readFile(store.partialPath(d))).every((b) => b === 0))
        } finally {
          await second.handle.close()
        }
      }
    })

    test('a record whose partial file vanished is dropped', async () => {
      const size = 10
      const d = digestOf(Buffer.from('vanished-partial'))
      const first = await store.openPartial(d, size)
      await first.handle.close()
      await store.checkpoint(d, { size, pieceSize: pieceSizeFor(size), bitfield: 'AQ==', hashes: ['00'] })
      await rm(store.partialPath(d))
      const second = await store.openPartial(d, size)
      try {
        assert.equal(second.progress, undefined)
        assert.equal((await stat(store.partialPath(d))).size, size)
        assert.equal(await store.partialBytes(), 0)
      } finally {
        await second.handle.close()
      }
    })

    test('discardPartial removes the file and the record', async () => {
      const size = 10
      const d = digestOf(Buffer.from('discard'))
      const { handle } = await store.openPartial(d, size)
      await store.checkpoint(d, { size, pieceSize: pieceSizeFor(size), bitfield: 'AQ==', hashes: [null] })
      await handle.close()
      await store.discardPartial(d)
      assert.equal(await exists(store.partialPath(d)), false)
      assert.equal(await store.partialBytes(), 0)
      await store.discardPartial(d) // idempotent
    })

    test('partialBytes sums the recorded sizes', async () => {
      const a = digestOf(Buffer.from('pa'))
      const b = digestOf(Buffer.from('pb'))
      await store.checkpoint(a, { size: 100, pieceSize: PIECE_SIZE_MIN, bitfield: 'AA==', hashes: [null] })
      await store.checkpoint(b, { size: 250, pieceSize: PIECE_SIZE_MIN, bitfield: 'AA==', hashes: [null] })
      assert.equal(await store.partialBytes(), 350)
    })
  })

  describe('commit', () => {
    test('makes the partial a complete blob that stat() finds', async () => {
      const bytes = Buffer.from('layer bytes '.repeat(100))
      const d = digestOf(bytes)
      const { handle } = await store.openPartial(d, bytes.length)
      await handle.write(bytes, 0, bytes.length, 0)
      await store.checkpoint(d, {
        size: bytes.length,
        pieceSize: pieceSizeFor(bytes.length),
        bitfield: 'AQ==',
        hashes: [null],
      })
      assert.equal(await store.stat(d), undefined, 'not complete before commit')
      const before = Date.now()
      await store.commit(d, handle, { size: bytes.length, pieceHashes: ['cd'.repeat(32)] })
      await handle.close()

      const info = await store.stat(d)
      assert.ok(info !== undefined)
      assert.equal(info.size, bytes.length)
      assert.equal(info.mediaType, undefined)
      assert.ok(info.lastAccess >= before && info.lastAccess <= Date.now())
      assert.deepEqual(await readFile(store.blobPath(d)), bytes)
      assert.equal(await exists(store.partialPath(d)), false)
      assert.equal(await store.partialBytes(), 0, 'the partial record is gone')
      assert.deepEqual(await store.pieceTable(d), ['cd'.repeat(32)])
      assert.deepEqual(await collect(store.listBlobs()), [d.value])
    })

    test('keeps the media type; no piece table unless given', async () => {
      const bytes = Buffer.from('{"schemaVersion":2}')
      const d = digestOf(bytes)
      const { handle } = await store.openPartial(d, bytes.length)
      await handle.write(bytes, 0, bytes.length, 0)
      await store.commit(d, handle, { size: bytes.length, mediaType: OCI_MANIFEST })
      await handle.close()
      assert.equal((await store.stat(d))?.mediaType, OCI_MANIFEST)
      assert.equal(await store.pieceTable(d), undefined)
    })

    test('survives a reopen', async () => {
      const bytes = Buffer.from('persisted')
      const d = digestOf(bytes)
      const { handle } = await store.openPartial(d, bytes.length)
      await handle.write(bytes, 0, bytes.length, 0)
      await store.commit(d, handle, { size: bytes.length })
      await handle.close()
      await reopen()
      assert.equal((await store.stat(d))?.size, bytes.length)
    })
  })

  describe('stat forgets blobs whose file is gone or wrong', () => {
    test('a vanished file: stat() is undefined and the record is dropped', async () => {
      const bytes = Buffer.from('will vanish')
      const d = digestOf(bytes)
      await store.putSmall(d, bytes, OCI_MANIFEST)
      assert.equal((await store.stat(d))?.size, bytes.length)
      await rm(store.blobPath(d))
      assert.equal(await store.stat(d), undefined)
      assert.deepEqual(await collect(store.listBlobs()), [], 'forgotten, not just hidden')
      await writeFile(store.blobPath(d), bytes)
      assert.equal(await store.stat(d), undefined, 'a file reappearing does not revive the record')
    })

    test('a file of the wrong size is forgotten too', async () => {
      const bytes = Buffer.from('will be truncated')
      const d = digestOf(bytes)
      await store.putSmall(d, bytes, OCI_MANIFEST)
      await truncate(store.blobPath(d), 3)
      assert.equal(await store.stat(d), undefined)
      assert.deepEqual(await collect(store.listBlobs()), [])
    })
  })

  test('putSmall writes a complete blob with its media type, leaving nothing in tmp/', async () => {
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST }))
    const d = digestOf(bytes)
    await store.putSmall(d, bytes, OCI_MANIFEST)
    const info = await store.stat(d)
    assert.equal(info?.size, bytes.length)
    assert.equal(info?.mediaType, OCI_MANIFEST)
    assert.deepEqual(await readFile(store.blobPath(d)), bytes)
    assert.deepEqual(await readdir(join(dataDir, 'tmp')), [])
    // Writing it again is harmless.
    await store.putSmall(d, bytes, OCI_MANIFEST)
    assert.deepEqual(await collect(store.listBlobs()), [d.value])
  })

  test('putSmall of one manifest by many requests at once: every call succeeds, one blob, nothing in tmp/', async () => {
    // Two clients pulling one multi-arch tag at once store the same manifest in the same millisecond.
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, n: 'same' }))
    const d = digestOf(bytes)
    const results = await Promise.allSettled(Array.from({ length: 16 }, () => store.putSmall(d, bytes, OCI_MANIFEST)))
    assert.deepEqual(
      results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason)),
      [],
    )
    assert.deepEqual(await readFile(store.blobPath(d)), bytes)
    assert.deepEqual(await readdir(join(dataDir, 'tmp')), [])
  })

  test('putSmall of an empty blob', async () => {
    const empty = new Uint8Array(0)
    const d = digestOf(empty)
    await store.putSmall(d, empty, 'application/octet-stream')
    assert.equal((await store.stat(d))?.size, 0)
  })

  test('sweepOrphans removes files a crash left without a record, and only those', async () => {
    const kept = Buffer.from('a blob with its record')
    const dk = digestOf(kept)
    await store.putSmall(dk, kept, OCI_MANIFEST)
    const resumable = digestOf(Buffer.from('a partial with progress'))
    const { handle } = await store.openPartial(resumable, 3000)
    await handle.close()
    await store.checkpoint(resumable, { size: 3000, pieceSize: pieceSizeFor(3000), bitfield: 'AA==', hashes: [null] })
    // A deletion cut short after its record went, a partial never checkpointed, a manifest write
    // cut short before its rename; and files that are not the store's.
    const orphan = digestOf(Buffer.from('record deleted, file not'))
    await writeFile(store.blobPath(orphan), Buffer.alloc(8192, 1))
    const unrecorded = digestOf(Buffer.from('no checkpoint yet'))
    await writeFile(store.partialPath(unrecorded), Buffer.alloc(4096, 2))
    const tmpFile = join(dataDir, 'tmp', `${dk.hex}.1234.0b6e2c4e-5d1a-4c1e-9e55-3f0c8f2a9b10`)
    await writeFile(tmpFile, 'half a manifest')
    const foreign = [join(dataDir, 'blobs', 'sha256', 'README'), join(dataDir, 'tmp', 'notes.txt')]
    for (const f of foreign) await writeFile(f, "not the store's")

    const swept = await store.sweepOrphans()
    assert.equal(swept.files, 3)
    assert.ok(swept.bytes >= 8192 + 4096, `bytes ${swept.bytes}`)
    assert.equal(await exists(store.blobPath(orphan)), false)
    assert.equal(await exists(store.partialPath(unrecorded)), false)
    assert.equal(await exists(tmpFile), false)
    for (const f of foreign) assert.equal(await exists(f), true, f)
    assert.equal((await store.stat(dk))?.size, kept.length)
    assert.equal(await exists(store.partialPath(resumable)), true)
    assert.deepEqual(await store.sweepOrphans(), { files: 0, bytes: 0 })
  })

  test('listBlobInfos and deleteBlob', async () => {
    const a = Buffer.from('blob a')
    const b = Buffer.from('blob b!')
    const da = digestOf(a)
    const db = digestOf(b)
    await store.putSmall(da, a, OCI_MANIFEST)
    await store.putSmall(db, b, OCI_MANIFEST)
    await store.setPieceTable(db, ['00'])
    const infos = await collect(store.listBlobInfos())
    assert.deepEqual(infos.map((x) => x.digest).sort(), [da.value, db.value].sort())
    assert.equal(infos.find((x) => x.digest === db.value)?.info.size, b.length)

    await store.deleteBlob(db)
    assert.equal(await store.stat(db), undefined)
    assert.equal(await exists(store.blobPath(db)), false)
    assert.equal(await store.pieceTable(db), undefined)
    assert.deepEqual(await collect(store.listBlobs()), [da.value])
    await store.deleteBlob(db) // idempotent
  })

  test('deleteBlob keeps a blob that `keep`, asked once the record is gone, wants kept', async () => {
    const b = Buffer.from('wanted again')
    const d = digestOf(b)
    await store.putSmall(d, b, OCI_MANIFEST)
    await store.setPieceTable(d, ['aa'])
    let asked = 0
    const deleted = await store.deleteBlob(d, () => {
      asked++
      return true
    })
    assert.equal(deleted, false)
    assert.equal(asked, 1)
    assert.equal((await store.stat(d))?.size, b.length)
    assert.deepEqual(await store.pieceTable(d), ['aa'])
    assert.equal(await exists(store.blobPath(d)), true)
    assert.equal(await store.deleteBlob(d, () => false), true)
    assert.equal(await store.stat(d), undefined)
    assert.equal(await exists(store.blobPath(d)), false)
  })

  test('piece tables', async () => {
    const d = digestOf(Buffer.from('pt'))
    assert.equal(await store.pieceTable(d), undefined)
    await store.setPieceTable(d, ['aa', 'bb'])
    assert.deepEqual(await store.pieceTable(d), ['aa', 'bb'])
  })

  test('touch records a new last access only when the old one is a minute old', async () => {
    const bytes = Buffer.from('touched')
    const d = digestOf(bytes)
    await store.putSmall(d, bytes, OCI_MANIFEST)
    const fresh = await store.stat(d)
    assert.ok(fresh !== undefined)
    await store.touch(d, { ...fresh, lastAccess: fresh.lastAccess - 1000 })
    assert.equal((await store.stat(d))?.lastAccess, fresh.lastAccess, 'recent: not written')
    const old = { ...fresh, lastAccess: Date.now() - 120_000 }
    const before = Date.now()
    await store.touch(d, old)
    const after = await store.stat(d)
    assert.ok(after !== undefined && after.lastAccess >= before)
    assert.equal(after.mediaType, OCI_MANIFEST)
  })

  test('tags', async () => {
    const key = 'registry-1.docker.io/library/ubuntu:latest'
    assert.equal(await store.getTag(key), undefined)
    const info = { digest: `sha256:${'1'.repeat(64)}`, mediaType: OCI_MANIFEST, size: 123, fetchedAt: 42 }
    await store.setTag(key, info)
    assert.deepEqual(await store.getTag(key), info)
    const moved = { ...info, digest: `sha256:${'2'.repeat(64)}`, fetchedAt: 43 }
    await store.setTag(key, moved)
    assert.deepEqual(await store.getTag(key), moved)
    assert.equal(await store.getTag('registry-1.docker.io/library/ubuntu:other'), undefined)
    await reopen()
    assert.deepEqual(await store.getTag(key), moved)
  })

  test('repository access', async () => {
    const key = 'ghcr.io/org/private'
    assert.equal(await store.getRepoAccess(key), undefined)
    await store.setRepoAccess(key, { public: false, checkedAt: 1 })
    assert.deepEqual(await store.getRepoAccess(key), { public: false, checkedAt: 1 })
    await store.setRepoAccess(key, { public: true, checkedAt: 2 })
    assert.deepEqual(await store.getRepoAccess(key), { public: true, checkedAt: 2 })
    assert.equal(await store.getRepoAccess('ghcr.io/org/other'), undefined)
  })

  test('links between repositories and blobs', async () => {
    const key = `ghcr.io/org/app@${'3'.repeat(64)}`
    assert.equal(await store.hasLink(key), false)
    await store.link(key)
    assert.equal(await store.hasLink(key), true)
    assert.equal(await store.hasLink(`ghcr.io/org/other@${'3'.repeat(64)}`), false)
  })

  test('tags, links and access records are not listed as blobs', async () => {
    await store.setTag('r/a:latest', { digest: 'sha256:x', mediaType: OCI_MANIFEST, size: 1, fetchedAt: 1 })
    await store.link('r/a@00')
    await store.setRepoAccess('r/a', { public: true, checkedAt: 1 })
    await store.setPieceTable(digestOf(Buffer.from('t')), ['00'])
    assert.deepEqual(await collect(store.listBlobs()), [])
    assert.equal(await store.partialBytes(), 0)
  })

  test('close releases the database (a second store can open the same dir)', async () => {
    await store.close()
    closed = true
    const again = createStore({ dataDir })
    await again.open()
    await again.close()
  })
})
