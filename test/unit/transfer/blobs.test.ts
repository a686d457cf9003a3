/**
 * BlobService: one download per digest, however the requests for it fall in time.
 */
import assert from 'node:assert/strict'
import { access, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { silentLogger } from '../../../src/log.js'
import { parseDigest } from '../../../src/oci/digest.js'
import { createOriginClient, type OriginClient } from '../../../src/origin/client.js'
import { GarbageCollector } from '../../../src/store/gc.js'
import { type BlobStore, createStore } from '../../../src/store/store.js'
import { type BlobHandle, type BlobRequest, BlobService } from '../../../src/transfer/blobs.js'
import { FakeOrigin, sha256 } from '../../helpers/fake-origin.js'

const MiB = 1024 * 1024
const REPO = 'team/app'

/** Polls `check` until it holds; fails after `ms`. */
async function waitFor(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(5)
  }
}

/** A handle on the stored file (not a transfer) whose bytes hash to `digest`; released after. */
async function assertStoredFile(handle: BlobHandle, digest: string): Promise<void> {
  try {
    assert.equal(handle.source, 'cache')
    assert.ok(handle.path !== undefined)
    assert.equal(sha256(await readFile(handle.path)), digest)
  } finally {
    handle.release()
  }
}

describe('BlobService', { timeout: 20_000 }, () => {
  let root: string
  let origin: FakeOrigin
  let store: BlobStore
  let blobs: BlobService
  let client: OriginClient

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'shoal-blobs-'))
    origin = await FakeOrigin.start()
    store = createStore({ dataDir: join(root, 'data') })
    await store.open()
    client = createOriginClient({ defaultUpstream: new URL(origin.url), registries: [] }, { logger: silentLogger() })
    blobs = new BlobService({ idleGraceMs: 0 }, { store, origin: client, logger: silentLogger() })
  })

  afterEach(async () => {
    await blobs.stopAll(1000)
    await store.close()
    await origin.stop()
    await rm(root, { recursive: true, force: true })
  })

  function request(digest: string, name = REPO): BlobRequest {
    return {
      upstream: client.upstreamFor(undefined),
      name,
      digest: parseDigest(digest),
      signal: AbortSignal.timeout(15_000),
    }
  }

  test('a request whose look at the store overlaps the end of the transfer gets the stored blob, not a second download', async () => {
    const { digest, data } = origin.addRandomBlob(REPO, 6 * MiB)
    // The second request's first look at the store answers "not there" but returns only after
    // the running transfer has stored the blob and left (a database read that straddles the commit).
    const stat = store.stat.bind(store)
    let straddle = false
    store.stat = async (d) => {
      const info = await stat(d)
      if (straddle && info === undefined) {
        straddle = false
        await waitFor('the transfer to store the blob and leave', () => blobs.activeTransfers === 0)
      }
      return info
    }
    const first = await blobs.open(request(digest))
    assert.equal(first.source, 'origin')
    assert.ok(first.reader !== undefined)
    straddle = true
    const second = blobs.open(request(digest))
    const reader = first.reader(AbortSignal.timeout(15_000))
    const buf = new Uint8Array(MiB)
    try {
      for (let pos = 0; pos < data.length; ) {
        const n = await reader.read(buf, pos)
        assert.ok(n > 0, 'the transfer ended its bytes early')
        pos += n
      }
    } finally {
      await reader.close()
      first.release()
    }
    await assertStoredFile(await second, digest)
    assert.equal(straddle, false, 'the second request looked at the store while the transfer ran')
    assert.equal(origin.bytesSentTo(`/v2/${REPO}/blobs/${digest}`, 'GET'), data.length)
  })

  test('garbage collection leaves a stored blob alone while a request for it waits on the origin for its link', async () => {
    const { digest, data } = origin.addRandomBlob(REPO, 2 * MiB)
    origin.addBlob('other/app', data)
    await blobs.fetch(request(digest))
    const gc = new GarbageCollector(
      { dataDir: join(root, 'data'), quota: { bytes: 0 }, intervalMs: 60_000 },
      { store, logger: silentLogger(), inUse: (hex) => blobs.inUse(hex) },
    )
    // Through another repository the blob is served only once the origin says it is there (a
    // HEAD, held back here): the cache is over its quota meanwhile, and the blob is its oldest.
    const held = origin.addFault({ method: 'HEAD', path: `/v2/other/app/blobs/${digest}`, delayMs: 500, times: 1 })
    const opening = blobs.open(request(digest, 'other/app'))
    await waitFor('the link check to reach the origin', () => held.hits > 0)
    const collected = await gc.run()
    assert.equal(collected.deleted, 0)
    await assertStoredFile(await opening, digest)
    // Nothing holds it any more: the next collection takes it.
    assert.equal((await gc.run()).deleted, 1)
    await assert.rejects(access(store.blobPath(parseDigest(digest))))
  })

  test('a blob stored by a release with 4 MiB pieces is served at 1 MiB pieces: its piece table is computed again', async () => {
    const { digest, data } = origin.addRandomBlob(REPO, 6 * MiB + 123)
    const handle = await blobs.open(request(digest))
    assert.ok(handle.reader !== undefined)
    const reader = handle.reader(AbortSignal.timeout(15_000))
    const buf = new Uint8Array(MiB)
    try {
      for (let pos = 0; pos < data.length; ) pos += await reader.read(buf, pos)
    } finally {
      await reader.close()
      handle.release()
    }
    const d = parseDigest(digest)
    await waitFor('the blob stored', () => blobs.activeTransfers === 0)
    // What 1.0.0 recorded: two 4 MiB pieces.
    const old = [data.subarray(0, 4 * MiB), data.subarray(4 * MiB)].map((b) => sha256(b).slice('sha256:'.length))
    await store.setPieceTable(d, old)

    const local = await blobs.local(d)
    assert.ok(local !== undefined)
    assert.equal(local.pieceSize, MiB)
    assert.equal(local.pieceCount, 7)
    const table = await local.pieceTable()
    assert.ok(table !== undefined)
    const expected = Array.from({ length: 7 }, (_, i) => sha256(data.subarray(i * MiB, (i + 1) * MiB)).slice(7))
    assert.deepEqual(
      table.map((h) => Buffer.from(h).toString('hex')),
      expected,
    )
    assert.deepEqual(await store.pieceTable(d), expected, 'the recomputed table is stored')
    // Asked again at once (as for every piece a peer requests): the same blob, the store not asked.
    const stat = store.stat.bind(store)
    let stats = 0
    store.stat = async (x) => {
      stats++
      return stat(x)
    }
    assert.equal(await blobs.local(d), local)
    assert.equal(stats, 0)
  })
})
