/**
 * A lying peer: a daemon with the corrupt-pieces fault switch flips a byte of every piece it
 * serves. A daemon that fetches from it must notice (the piece does not match its announced hash),
 * ban it, and still deliver the right blob to its client — from an honest peer when there is one,
 * else from the origin. Daemons run in this process (`createDaemon(…, { corruptServedPieces })`),
 * and once as a subprocess with SHOAL_TEST_CORRUPT_PIECES=1.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { FakeOrigin } from '../helpers/fake-origin.js'
import {
  DaemonProcess,
  InProcessDaemon,
  MiB,
  pull,
  removeDir,
  type SwarmDaemon,
  settledBlobBytes,
  stopAll,
  tempDir,
  waitForPeers,
} from '../helpers/swarm.js'

describe('swarm: corrupt peer', { timeout: 120_000 }, () => {
  let origin: FakeOrigin
  let root: string
  const daemons: SwarmDaemon[] = []

  before(async () => {
    origin = await FakeOrigin.start()
    root = await tempDir('shsw-bad-')
  })

  after(async () => {
    await stopAll(daemons)
    await origin?.stop()
    await removeDir(root)
  })

  async function fill(d: SwarmDaemon, path: string, digest: string): Promise<void> {
    const r = await pull(`${d.url}${path}`, 30_000)
    assert.equal(r.error, undefined, `${d.name}: ${r.error}`)
    assert.equal(r.digest, digest, `${d.name} could not pull from the origin`)
  }

  it('a liar and an honest holder: the puller bans the liar and gets every byte from the honest peer', async () => {
    const blob = origin.addRandomBlob('bad/one', 30 * MiB + 999)
    const path = `/v2/bad/one/blobs/${blob.digest}`
    // Liar and honest holder each fetch the blob from the origin, unconnected (the honest one must
    // not take corrupt pieces from the liar).
    const liar = await InProcessDaemon.start({
      name: 'liar',
      dataDir: join(root, 'liar'),
      upstream: origin.url,
      corruptServedPieces: true,
    })
    daemons.push(liar)
    // The puller asks a holder as soon as its Hello comes (four pieces in flight per peer): with
    // eight pieces and a slow honest holder, pieces are left for the liar once its Hello arrives.
    const honest = await InProcessDaemon.start({
      name: 'honest',
      dataDir: join(root, 'honest'),
      upstream: origin.url,
      uploadRate: '8MiB/s',
    })
    daemons.push(honest)
    await fill(liar, path, blob.digest)
    await fill(honest, path, blob.digest)
    const originBefore = origin.bytesSentTo(path, 'GET')

    const puller = await InProcessDaemon.start({
      name: 'puller',
      dataDir: join(root, 'puller'),
      upstream: origin.url,
      bootstrap: [...liar.p2pAddrs, ...honest.p2pAddrs],
    })
    daemons.push(puller)
    await waitForPeers([puller], 2)

    const r = await pull(`${puller.url}${path}`, 60_000)
    assert.equal(r.error, undefined, r.error)
    assert.equal(r.status, 200)
    assert.equal(r.digest, blob.digest, 'the client got corrupt bytes')
    const st = await puller.status()
    assert.ok(st.peersBanned >= 1, `the liar was not banned: ${JSON.stringify(st)}`)
    const bytes = await settledBlobBytes(puller, blob.data.length)
    assert.equal(origin.bytesSentTo(path, 'GET'), originBefore, `the honest peer had it all: ${JSON.stringify(bytes)}`)
    assert.equal(bytes.peer, blob.data.length, JSON.stringify(bytes))
    // The honest holder is still a peer; the liar is cut off.
    assert.equal((await honest.status()).peersBanned, 0)
  })

  it('a liar alone (subprocess, SHOAL_TEST_CORRUPT_PIECES=1): the puller bans it and falls back to the origin', async () => {
    const blob = origin.addRandomBlob('bad/two', 10 * MiB + 3)
    const path = `/v2/bad/two/blobs/${blob.digest}`
    const liar = await DaemonProcess.start({
      name: 'liar2',
      dataDir: join(root, 'liar2'),
      upstream: origin.url,
      env: { SHOAL_TEST_CORRUPT_PIECES: '1' },
    })
    daemons.push(liar)
    await fill(liar, path, blob.digest)
    const originBefore = origin.bytesSentTo(path, 'GET')

    const puller = await DaemonProcess.start({
      name: 'puller2',
      dataDir: join(root, 'puller2'),
      upstream: origin.url,
      bootstrap: liar.p2pAddrs,
    })
    daemons.push(puller)
    await waitForPeers([puller], 1)

    const r = await pull(`${puller.url}${path}`, 60_000)
    assert.equal(r.error, undefined, `${r.error}\n${puller.describe()}`)
    assert.equal(r.status, 200)
    assert.equal(r.digest, blob.digest, 'the client got corrupt bytes')
    const st = await puller.status()
    assert.ok(st.peersBanned >= 1, `the liar was not banned: ${JSON.stringify(st)}\n${puller.describe()}`)
    assert.ok(
      puller.hasLog('peer banned', (l) => l.peer === liar.peerId),
      puller.describe(),
    )
    // No corrupt byte was counted as delivered: what the client got came from the origin.
    const bytes = await settledBlobBytes(puller, blob.data.length)
    assert.equal(bytes.peer, 0, JSON.stringify(bytes))
    assert.equal(bytes.origin, blob.data.length, JSON.stringify(bytes))
    assert.ok(origin.bytesSentTo(path, 'GET') - originBefore >= blob.data.length)
  })
})
