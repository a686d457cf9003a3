/**
 * Disk full: a pull still succeeds, its bytes passed straight from the origin and stored nowhere.
 * The data dir lives on a small tmpfs that cannot hold the blob (needs root, as the e2e tests do).
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { FakeOrigin } from '../helpers/fake-origin.js'
import { runOk as run } from '../helpers/proc.js'
import { http, MiB, removeDir, type Shoal, sha256, startShoal, tempRoot } from './support.js'

describe('disk full', () => {
  let origin: FakeOrigin
  let root: string
  let mount: string
  let mounted = false
  let shoal: Shoal | undefined

  before(async () => {
    origin = await FakeOrigin.start()
    root = await tempRoot()
    mount = join(root, 'small')
    await mkdir(mount)
    await run('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mount])
    mounted = true
    shoal = await startShoal({ upstream: origin.url, dataDir: join(mount, 'data') })
  })

  after(async () => {
    try {
      await shoal?.stop()
    } finally {
      // Lazy: a file still open cannot keep the test from cleaning up.
      if (mounted) await run('umount', ['-l', mount]).catch(() => {})
      await origin?.stop()
      await removeDir(root)
    }
  })

  test('a blob larger than the free space is passed through from the origin, intact', async () => {
    const data = randomBytes(16 * MiB)
    const digest = origin.addBlob('full/disk', data)
    const r = await http(shoal?.url ?? '', `/v2/full/disk/blobs/${digest}`, { timeoutMs: 60_000 })
    assert.equal(r.status, 200)
    assert.ok(r.complete, `cut: ${String(r.error)}`)
    // The first piece fitted (source origin, headers sent), the rest came straight through.
    assert.ok(['origin', 'passthrough'].includes(String(r.headers['x-shoal-source'])))
    assert.equal(r.body.length, data.length)
    assert.equal(sha256(r.body), digest)
  })

  test('a blob whose first piece does not fit is passed through from its first byte', async () => {
    const data = randomBytes(24 * MiB)
    const digest = origin.addBlob('full/disk', data)
    const r = await http(shoal?.url ?? '', `/v2/full/disk/blobs/${digest}`, { timeoutMs: 60_000 })
    assert.equal(r.status, 200)
    assert.ok(r.complete, `cut: ${String(r.error)}`)
    assert.equal(sha256(r.body), digest)
  })

  test('the daemon keeps answering afterwards', async () => {
    const small = randomBytes(64 * 1024)
    const digest = origin.addBlob('full/disk', small)
    const r = await http(shoal?.url ?? '', `/v2/full/disk/blobs/${digest}`, { timeoutMs: 30_000 })
    assert.equal(r.status, 200)
    assert.equal(sha256(r.body), digest)
  })
})
