/**
 * Crashes (SIGKILL, by PID) in the middle of transfers:
 * - the peer a daemon is fetching a blob from dies: the pull still completes, from the origin;
 * - the downloading daemon itself dies: restarted on the same data dir, it resumes its partial
 *   blob with a Range request instead of starting over.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { FakeOrigin } from '../helpers/fake-origin.js'
import {
  DaemonProcess,
  MiB,
  PIECE,
  pull,
  removeDir,
  settledBlobBytes,
  stopAll,
  tempDir,
  waitFor,
  waitForPeers,
} from '../helpers/swarm.js'

describe('swarm: crashes mid-transfer', { timeout: 150_000 }, () => {
  let origin: FakeOrigin
  let root: string
  const daemons: DaemonProcess[] = []

  before(async () => {
    origin = await FakeOrigin.start()
    root = await tempDir('shsw-crash-')
  })

  after(async () => {
    await stopAll(daemons)
    await origin?.stop()
    await removeDir(root)
  })

  it('the serving peer is killed (-9) midway: the pull completes from the origin with the right digest', async () => {
    const blob = origin.addRandomBlob('crash/peer', 32 * MiB + 17)
    const path = `/v2/crash/peer/blobs/${blob.digest}`
    // A serves peers at 4 MiB/s (about a piece a second): B is still fetching when A dies.
    const a = await DaemonProcess.start({
      name: 'server-a',
      dataDir: join(root, 'a'),
      upstream: origin.url,
      uploadRate: '4MiB/s',
    })
    daemons.push(a)
    const fill = await pull(`${a.url}${path}`, 30_000)
    assert.equal(fill.digest, blob.digest, a.describe())
    const originBefore = origin.bytesSentTo(path, 'GET')

    const b = await DaemonProcess.start({
      name: 'puller-b',
      dataDir: join(root, 'b'),
      upstream: origin.url,
      bootstrap: a.p2pAddrs,
    })
    daemons.push(b)
    await waitForPeers([b], 1)

    const pulling = pull(`${b.url}${path}`, 90_000)
    // Wait until B holds at least one piece from A, with most of the blob still to come.
    await waitFor(
      'B to receive a piece from A',
      async () => (await b.blobBytes()).peer >= PIECE,
      20_000,
      50,
      () => b.describe(),
    )
    const fromPeerAtKill = (await b.blobBytes()).peer
    assert.equal(origin.bytesSentTo(path, 'GET'), originBefore, 'B used the origin while A was serving it')
    await a.kill9()
    assert.equal(a.running, false)

    const r = await pulling
    assert.equal(r.error, undefined, `${r.error}\n${b.describe()}`)
    assert.equal(r.status, 200)
    assert.equal(r.bytes, blob.data.length)
    assert.equal(r.digest, blob.digest, 'wrong bytes after the peer died')
    const bytes = await settledBlobBytes(b, blob.data.length)
    const originForB = origin.bytesSentTo(path, 'GET') - originBefore
    assert.ok(fromPeerAtKill < blob.data.length, 'A was killed before it had sent everything')
    assert.ok(originForB > 0, 'the rest came from the origin')
    assert.equal(bytes.peer + bytes.origin, blob.data.length, JSON.stringify(bytes))
    assert.ok(originForB >= bytes.origin, `origin sent ${originForB}, B counted ${JSON.stringify(bytes)}`)
    console.log(
      `peer killed: ${bytes.peer} bytes from the peer, ${bytes.origin} from the origin, pull ${r.ms} ms (${JSON.stringify(bytes)})`,
    )
  })

  it('the downloading daemon is killed (-9) mid-download: restarted on its data dir it resumes with a Range request', async () => {
    const size = 24 * MiB + 4096
    const blob = origin.addRandomBlob('crash/resume', size)
    const path = `/v2/crash/resume/blobs/${blob.digest}`
    // The first GET sends 4.5 pieces fast (progress is recorded every 16 MiB: after piece 4),
    // then crawls at 256 KiB/s.
    const fault = origin.addFault({ method: 'GET', path, times: 1, slowAfter: 18 * MiB, bytesPerSecond: 256 * 1024 })
    const dataDir = join(root, 'resumer')
    const d = await DaemonProcess.start({ name: 'resumer', dataDir, upstream: origin.url })
    daemons.push(d)
    const doomed = pull(`${d.url}${path}`, 60_000)
    // Past the 16 MiB checkpoint and well into the slow part (the checkpoint is written by then).
    await waitFor(
      'the origin to send 18.5 MiB',
      () => origin.requestsTo(path, 'GET').some((r) => r.bytesSent >= 18 * MiB + 128 * 1024),
      30_000,
      50,
      () => d.describe(),
    )
    await d.kill9()
    const cut = await doomed
    assert.notEqual(cut.error, undefined, 'the client of the killed daemon got a cut body')
    fault.remove()
    const firstGets = origin.requestsTo(path, 'GET').length

    const again = await DaemonProcess.start({ name: 'resumer-2', dataDir, upstream: origin.url })
    daemons.push(again)
    const r = await pull(`${again.url}${path}`, 60_000)
    assert.equal(r.error, undefined, `${r.error}\n${again.describe()}`)
    assert.equal(r.status, 200)
    assert.equal(r.digest, blob.digest, 'wrong bytes after the resume')

    const later = origin.requestsTo(path, 'GET').slice(firstGets)
    const ranges = later.map((q) => q.range ?? 'none')
    const detail = JSON.stringify({ ranges, all: origin.requestsTo(path, 'GET').map((q) => [q.range, q.bytesSent]) })
    assert.ok(later.length > 0, detail)
    const starts = ranges.map((x) => Number(/^bytes=(\d+)-/.exec(x)?.[1] ?? '0'))
    assert.ok(
      starts.every((s) => s > 0),
      `after the restart the daemon fetched from byte 0 again: ${detail}`,
    )
    assert.ok(Math.min(...starts) >= 16 * MiB, `only the pieces after the checkpoint are fetched again: ${detail}`)
    const total = origin.bytesSentTo(path, 'GET')
    assert.ok(total < 2 * size, `origin sent ${total} bytes for a ${size}-byte blob: ${detail}`)
    assert.ok(again.hasLog('resuming partial blob'), again.describe())
    console.log(`resume: origin sent ${total} bytes for a ${size}-byte blob; after the restart: ${ranges.join(', ')}`)
  })
})
