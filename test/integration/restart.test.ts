/**
 * A daemon stopped (or killed -9) in the middle of a blob resumes it after a restart on the same
 * data dir: the origin sees a Range request from a nonzero offset.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { CHECKPOINT_BYTES } from '../../src/constants.js'
import { FakeOrigin } from '../helpers/fake-origin.js'
import {
  http,
  MiB,
  PIECE,
  removeDir,
  type Shoal,
  type ShoalProcess,
  sha256,
  spawnShoal,
  startShoal,
  tempRoot,
  waitFor,
} from './support.js'

function rangeStart(range: string | undefined): number {
  const m = /^bytes=(\d+)-(\d*)$/.exec(range ?? '')
  assert.ok(m?.[1] !== undefined, `expected a single bytes= range, got ${String(range)}`)
  return Number(m[1])
}

describe('restart mid-blob', () => {
  let origin: FakeOrigin
  let root: string
  const daemons: Shoal[] = []
  const procs: ShoalProcess[] = []

  before(async () => {
    origin = await FakeOrigin.start()
    root = await tempRoot()
  })

  after(async () => {
    for (const p of procs) await p.kill9()
    for (const d of daemons) await d.stop()
    await origin?.stop()
    await removeDir(root)
  })

  /**
   * Starts a download through `url`, waits until the origin sent `crashAfter` bytes (the origin
   * turns slow just before, so the crash lands mid-blob), then runs `crash`.
   */
  async function interrupt(
    url: string,
    path: string,
    size: number,
    crashAfter: number,
    crash: () => Promise<void>,
  ): Promise<{ cutAt: number }> {
    // Full speed up to a little before the crash point, then slow: the crash lands mid-blob.
    const slow = origin.addFault({
      method: 'GET',
      path,
      bytesPerSecond: 2 * MiB,
      slowAfter: Math.max(0, crashAfter - MiB),
    })
    try {
      const client = http(url, path, { timeoutMs: 30_000 })
      await waitFor(
        `the origin to send ${crashAfter} bytes`,
        () => (origin.requestsTo(path, 'GET')[0]?.bytesSent ?? 0) >= crashAfter,
        15_000,
      )
      const cutAt = origin.requestsTo(path, 'GET')[0]?.bytesSent ?? 0
      await crash()
      const r = await client
      assert.ok(!(r.status === 200 && r.complete), 'the first client cannot have received the whole blob')
      assert.ok(r.body.length < size)
      await waitFor('the origin GET to end', () => origin.requestsTo(path, 'GET')[0]?.finishedAt !== undefined, 5_000)
      assert.equal(origin.requestsTo(path, 'GET')[0]?.complete, false)
      return { cutAt }
    } finally {
      slow.remove()
    }
  }

  test('in-process stop mid-blob, start on the same data dir: resumed with Range', async () => {
    const repo = 'restart/in-process'
    const size = 12 * MiB
    const { digest } = origin.addRandomBlob(repo, size)
    const path = `/v2/${repo}/blobs/${digest}`
    const dataDir = join(root, 'in-process')
    const first = await startShoal({ upstream: origin.url, dataDir })
    daemons.push(first)
    // A stop records the progress, whatever the checkpoint interval: more than one piece is enough.
    const { cutAt } = await interrupt(first.url, path, size, PIECE + MiB, () => first.stop())

    const second = await startShoal({ upstream: origin.url, dataDir })
    daemons.push(second)
    const r = await http(second.url, path, { timeoutMs: 30_000 })
    assert.equal(r.status, 200)
    assert.ok(r.complete, r.error)
    assert.equal(sha256(r.body), digest)
    const gets = origin.requestsTo(path, 'GET')
    assert.equal(gets.length, 2, `GETs: ${gets.map((g) => g.range).join(' ')}`)
    assert.equal(rangeStart(gets[0]?.range), 0)
    const start = rangeStart(gets[1]?.range)
    assert.ok(start > 0 && start <= cutAt, `resumed from ${start}; the origin had sent ${cutAt} bytes`)
    assert.equal(gets[1]?.bytesSent, size - start)
    await second.stop()
  })

  test('kill -9 of a daemon subprocess mid-blob, restart on the same data dir: resumed with Range', async () => {
    const repo = 'restart/kill9'
    // A kill leaves only what was checkpointed: progress is recorded every CHECKPOINT_BYTES.
    const size = CHECKPOINT_BYTES + 2 * PIECE
    const { digest } = origin.addRandomBlob(repo, size)
    const path = `/v2/${repo}/blobs/${digest}`
    const dataDir = join(root, 'kill9')
    const first = await spawnShoal({ upstream: origin.url, dataDir })
    procs.push(first)
    const { cutAt } = await interrupt(first.url, path, size, CHECKPOINT_BYTES + MiB, () => first.kill9())
    assert.equal(first.child.signalCode, 'SIGKILL')

    const second = await spawnShoal({ upstream: origin.url, dataDir })
    procs.push(second)
    const r = await http(second.url, path, { timeoutMs: 30_000 })
    assert.equal(r.status, 200)
    assert.ok(r.complete, r.error)
    assert.equal(sha256(r.body), digest)
    const gets = origin.requestsTo(path, 'GET')
    assert.equal(gets.length, 2, `GETs: ${gets.map((g) => g.range).join(' ')}`)
    const start = rangeStart(gets[1]?.range)
    assert.ok(start > 0 && start <= cutAt, `resumed from ${start}; the origin had sent ${cutAt} bytes`)
    assert.equal(gets[1]?.bytesSent, size - start)
    await second.kill9()
  })
})
