/**
 * One bootstrap address (the common edge and lab setup): daemons 2…5 know only daemon 1. When they
 * all pull the same uncached blob, peer exchange on the piece protocol must introduce them to each
 * other at once — otherwise each computes the cold-start rendezvous over a different set of
 * downloaders and fetches pieces the others fetch too.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { FakeOrigin } from '../helpers/fake-origin.js'
import {
  DaemonProcess,
  freePort,
  MiB,
  pull,
  removeDir,
  settledBlobBytes,
  stopAll,
  tempDir,
  waitForPeers,
} from '../helpers/swarm.js'

const NODES = 5

describe('swarm: one bootstrap address (star)', { timeout: 120_000 }, () => {
  let origin: FakeOrigin
  let root: string
  const daemons: DaemonProcess[] = []

  before(async () => {
    origin = await FakeOrigin.start()
    root = await tempDir('shsw-star-')
    const hubPort = await freePort()
    const hub = await DaemonProcess.start({
      name: 'star0',
      dataDir: join(root, 'star0'),
      upstream: origin.url,
      p2pPort: hubPort,
    })
    daemons.push(hub)
    const ports = await Promise.all(Array.from({ length: NODES - 1 }, () => freePort()))
    const spokes = await Promise.all(
      ports.map((p, i) =>
        DaemonProcess.start({
          name: `star${i + 1}`,
          dataDir: join(root, `star${i + 1}`),
          upstream: origin.url,
          p2pPort: p,
          bootstrap: [`/ip4/127.0.0.1/tcp/${hubPort}`],
        }),
      ),
    )
    daemons.push(...spokes)
    await waitForPeers(daemons, 1, 30_000)
  })

  after(async () => {
    await stopAll(daemons)
    await origin?.stop()
    await removeDir(root)
  })

  it('daemons that know only the first one meet through it and fetch each piece from the origin once', async () => {
    const repo = 'star/app'
    const blob = origin.addRandomBlob(repo, 40 * MiB + 123)
    const path = `/v2/${repo}/blobs/${blob.digest}`
    const peersBefore = await Promise.all(daemons.map((d) => d.status().then((s) => s.peers)))
    const results = await Promise.all(daemons.map((d) => pull(`${d.url}${path}`, 90_000)))
    const peersAfter = await Promise.all(daemons.map((d) => d.status().then((s) => s.peers)))
    const originBytes = origin.bytesSentTo(path, 'GET')
    const detail = JSON.stringify({
      peersBefore,
      peersAfter,
      originBytes,
      ratio: originBytes / blob.data.length,
      ms: results.map((r) => r.ms),
    })
    console.log(`star: ${detail}`)
    results.forEach((r, i) => {
      const d = daemons[i] as DaemonProcess
      assert.equal(r.error, undefined, `${d.name}: ${r.error}\n${d.describe()}`)
      assert.equal(r.digest, blob.digest, `${d.name} served wrong bytes`)
    })
    // Everyone met everyone while pulling.
    assert.deepEqual(
      peersAfter,
      daemons.map(() => NODES - 1),
      detail,
    )
    assert.ok(originBytes <= 1.1 * blob.data.length, `origin sent ${originBytes} bytes: ${detail}`)
    const books = await Promise.all(daemons.map((d) => settledBlobBytes(d, blob.data.length)))
    assert.equal(
      books.reduce((n, b) => n + b.origin, 0),
      originBytes,
      `the daemons' origin counters disagree with the origin: ${JSON.stringify(books)}`,
    )
  })
})
