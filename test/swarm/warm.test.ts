/**
 * Warm swarm: one daemon holds a blob (pulled once from the origin); four others, bootstrapped to
 * it, pull it at the same time. The origin must not send them a single blob byte: everything comes
 * from peers (the holder, or each other).
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { FakeOrigin } from '../helpers/fake-origin.js'
import {
  DaemonProcess,
  DelayRelay,
  MiB,
  pull,
  removeDir,
  type SwarmDaemon,
  settledBlobBytes,
  stopAll,
  sumBlobBytes,
  tempDir,
  waitForPeers,
} from '../helpers/swarm.js'

describe('swarm: warm pull', { timeout: 120_000 }, () => {
  let origin: FakeOrigin
  let root: string
  const daemons: DaemonProcess[] = []
  let relay: DelayRelay | undefined

  before(async () => {
    origin = await FakeOrigin.start()
    root = await tempDir('shsw-warm-')
  })

  after(async () => {
    await stopAll(daemons)
    await relay?.stop()
    await origin?.stop()
    await removeDir(root)
  })

  it('four daemons get a blob one peer holds with no blob byte from the origin', async () => {
    // 18 MiB + a tail: four full pieces and a short one.
    const blob = origin.addRandomBlob('team/app', 18 * MiB + 12_345)
    const path = `/v2/team/app/blobs/${blob.digest}`

    const holder = await DaemonProcess.start({ name: 'holder', dataDir: join(root, 'holder'), upstream: origin.url })
    daemons.push(holder)
    const first = await pull(`${holder.url}${path}`)
    assert.equal(first.status, 200, holder.describe())
    assert.equal(first.digest, blob.digest)
    const originBefore = origin.bytesSentTo(path, 'GET')
    const getsBefore = origin.requestsTo(path, 'GET').length
    assert.ok(originBefore >= blob.data.length, 'the holder pulled the blob from the origin')

    const boot = holder.p2pAddrs
    const others = await Promise.all(
      [1, 2, 3, 4].map((i) =>
        DaemonProcess.start({
          name: `warm${i}`,
          dataDir: join(root, `warm${i}`),
          upstream: origin.url,
          bootstrap: boot,
        }),
      ),
    )
    daemons.push(...others)
    await waitForPeers(others, 1)

    const t0 = Date.now()
    const results = await Promise.all(others.map((d) => pull(`${d.url}${path}`, 60_000)))
    results.forEach((r, i) => {
      const d = others[i] as SwarmDaemon
      assert.equal(r.error, undefined, `${d.name}: ${r.error}\n${d.describe()}`)
      assert.equal(r.status, 200, d.describe())
      assert.equal(r.bytes, blob.data.length)
      assert.equal(r.digest, blob.digest, `${d.name} served the wrong bytes`)
    })

    // At the origin: no GET of the blob since the holder's, and no blob byte.
    const gets = origin
      .requestsTo(path, 'GET')
      .slice(getsBefore)
      .map((q) => `${q.range ?? 'all'} sent ${q.bytesSent} at +${q.startedAt - t0} ms`)
    const metrics = await Promise.all(
      others.map(async (d) => `${d.name} ${JSON.stringify(await settledBlobBytes(d, blob.data.length))}`),
    )
    const times = results.map((r) => r.ms)
    const detail = `origin GETs after the holder's: ${JSON.stringify(gets)}; ${metrics.join('; ')}; pulls took ${times.join(', ')} ms`
    assert.equal(origin.bytesSentTo(path, 'GET'), originBefore, `the origin sent blob bytes to the four: ${detail}`)
    assert.equal(origin.requestsTo(path, 'GET').length, getsBefore, `a blob GET reached the origin: ${detail}`)
    // The four's own metrics agree: every byte from peers.
    const sums = await sumBlobBytes(others)
    assert.equal(sums.origin, 0, `origin bytes on the four: ${JSON.stringify(sums)}`)
    for (const d of others) {
      const b = await settledBlobBytes(d, blob.data.length)
      assert.equal(b.peer, blob.data.length, `${d.name}: ${JSON.stringify(b)}`)
      assert.equal(b.origin, 0, `${d.name}: ${JSON.stringify(b)}`)
    }
  })

  it('a holder behind a slow link (150 ms each way): the puller waits for its answer and takes every piece from it', async () => {
    // The puller's transfer must not decide it is alone before the holder's Hello (one round trip
    // or two after the stream opens, ~0.3–0.9 s here, well inside the 2 s readiness bound).
    const blob = origin.addRandomBlob('team/far', 10 * MiB + 1)
    const path = `/v2/team/far/blobs/${blob.digest}`
    const holder = await DaemonProcess.start({
      name: 'far-holder',
      dataDir: join(root, 'far-holder'),
      upstream: origin.url,
    })
    daemons.push(holder)
    assert.equal((await pull(`${holder.url}${path}`)).digest, blob.digest)
    const originBefore = origin.bytesSentTo(path, 'GET')
    const holderPort = Number(/\/tcp\/(\d+)$/.exec(holder.p2pAddrs[0] as string)?.[1])
    relay = await DelayRelay.start(holderPort, 150)

    const puller = await DaemonProcess.start({
      name: 'far-puller',
      dataDir: join(root, 'far-puller'),
      upstream: origin.url,
      bootstrap: [`/ip4/127.0.0.1/tcp/${relay.port}`],
    })
    daemons.push(puller)
    await waitForPeers([puller], 1)
    const t0 = Date.now()
    const r = await pull(`${puller.url}${path}`, 60_000)
    assert.equal(r.error, undefined, `${r.error}\n${puller.describe()}`)
    assert.equal(r.digest, blob.digest)
    const bytes = await settledBlobBytes(puller, blob.data.length)
    const gets = origin
      .requestsTo(path, 'GET')
      .map((q) => `${q.range ?? 'all'} sent ${q.bytesSent} at +${q.startedAt - t0} ms`)
      .slice(1)
    const detail = `origin GETs after the holder's: ${JSON.stringify(gets)}; puller ${JSON.stringify(bytes)}; pull ${r.ms} ms`
    assert.equal(origin.bytesSentTo(path, 'GET'), originBefore, `the puller went to the origin: ${detail}`)
    assert.equal(bytes.peer, blob.data.length, detail)
  })
  it('a holder whose own pull ended keeps its sessions while a slow puller still fetches from it', async () => {
    // The holder closes piece sessions of a blob it no longer downloads once they go quiet
    // (1.5 s here instead of 60 s): a puller taking ~6 s (2 MiB/s upload) must keep its session,
    // or it would lose the only holder and go to the origin.
    const blob = origin.addRandomBlob('team/slow', 12 * MiB + 7)
    const path = `/v2/team/slow/blobs/${blob.digest}`
    const holder = await DaemonProcess.start({
      name: 'slow-holder',
      dataDir: join(root, 'slow-holder'),
      upstream: origin.url,
      uploadRate: '2MiB/s',
      env: { SHOAL_TEST_IDLE_SESSIONS_MS: '1500' },
    })
    daemons.push(holder)
    const first = await pull(`${holder.url}${path}`)
    assert.equal(first.digest, blob.digest, holder.describe())
    const originBefore = origin.bytesSentTo(path, 'GET')
    const puller = await DaemonProcess.start({
      name: 'slow-puller',
      dataDir: join(root, 'slow-puller'),
      upstream: origin.url,
      bootstrap: holder.p2pAddrs,
    })
    daemons.push(puller)
    await waitForPeers([puller], 1)
    const r = await pull(`${puller.url}${path}`, 60_000)
    assert.equal(r.error, undefined, `${r.error}\n${puller.describe()}`)
    assert.equal(r.digest, blob.digest)
    assert.ok(r.ms > 3_000, `the pull took ${r.ms} ms: the upload limit did not hold, the test proves nothing`)
    const b = await settledBlobBytes(puller, blob.data.length)
    assert.equal(origin.bytesSentTo(path, 'GET'), originBefore, `the origin sent blob bytes: ${JSON.stringify(b)}`)
    assert.equal(b.peer, blob.data.length, JSON.stringify(b))
  })
})
