/**
 * Cold herd: five daemons, bootstrapped together, all pull the same uncached image (several
 * blobs, 64 MiB in all) at the same moment. Each piece must come from the origin through one node
 * only: the origin sends at most 1.1 × the blob bytes in total.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { FakeOrigin, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST } from '../helpers/fake-origin.js'
import {
  DaemonProcess,
  freePort,
  getText,
  MiB,
  type PullResult,
  pull,
  removeDir,
  settledBlobBytes,
  stopAll,
  tempDir,
  waitFor,
  waitForPeers,
} from '../helpers/swarm.js'

const NODES = 5

/** Origin GETs of one blob, as `start-end` of their Range (or `all`), with the bytes sent. */
function originRanges(origin: FakeOrigin, path: string): string[] {
  return origin.requestsTo(path, 'GET').map((r) => `${r.range?.replace('bytes=', '') ?? 'all'}:${r.bytesSent}`)
}

describe('swarm: cold herd', { timeout: 170_000 }, () => {
  let origin: FakeOrigin
  let root: string
  const daemons: DaemonProcess[] = []

  before(async () => {
    origin = await FakeOrigin.start()
    root = await tempDir('shsw-herd-')
    // Every daemon bootstraps to every other (static multiaddrs, no /p2p/), all started together.
    const ports = await Promise.all(Array.from({ length: NODES }, () => freePort()))
    const started = await Promise.all(
      ports.map((p, i) =>
        DaemonProcess.start({
          name: `herd${i}`,
          dataDir: join(root, `herd${i}`),
          upstream: origin.url,
          p2pPort: p,
          bootstrap: ports.filter((q) => q !== p).map((q) => `/ip4/127.0.0.1/tcp/${q}`),
        }),
      ),
    )
    daemons.push(...started)
    await waitForPeers(daemons, NODES - 1, 30_000)
  })

  after(async () => {
    await stopAll(daemons)
    await origin?.stop()
    await removeDir(root)
  })

  it('five daemons pulling a 64 MiB image at once cost the origin ≤ 1.1 × its bytes', async () => {
    const repo = 'herd/app'
    // Layers of uneven sizes (short last pieces), 64 MiB in all with the config.
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers' } }))
    const configDigest = origin.addBlob(repo, config)
    const sizes = [30 * MiB + 4321, 21 * MiB + 77, 9 * MiB, 4 * MiB - 4321 - 77 - config.length]
    const layers = sizes.map((n) => origin.addRandomBlob(repo, n))
    origin.addManifest(
      repo,
      {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length },
        layers: layers.map((l) => ({ mediaType: OCI_LAYER, digest: l.digest, size: l.data.length })),
      },
      OCI_MANIFEST,
      ['v1'],
    )
    const blobs = [{ digest: configDigest, data: config }, ...layers]
    const totalBytes = blobs.reduce((n, b) => n + b.data.length, 0)
    assert.equal(totalBytes, 64 * MiB)
    const before = await Promise.all(daemons.map((d) => d.blobBytes()))
    const blobBytesBefore = origin.bytesSentTo(/\/blobs\//, 'GET')

    // The manifest first (no blob bytes), then every blob on every daemon in the same moment.
    for (const d of daemons) {
      const m = await getText(`${d.url}/v2/${repo}/manifests/v1`, 10_000, { accept: OCI_MANIFEST })
      assert.equal(m?.status, 200, d.describe())
    }
    const t0 = Date.now()
    const pulls: Promise<PullResult>[] = []
    for (const d of daemons) for (const b of blobs) pulls.push(pull(`${d.url}/v2/${repo}/blobs/${b.digest}`, 120_000))
    const results = await Promise.all(pulls)
    const ms = Date.now() - t0

    results.forEach((r, k) => {
      const d = daemons[Math.floor(k / blobs.length)] as DaemonProcess
      const b = blobs[k % blobs.length] as { digest: string; data: Buffer }
      assert.equal(r.error, undefined, `${d.name} ${b.digest}: ${r.error}\n${d.describe()}`)
      assert.equal(r.status, 200, d.describe())
      assert.equal(r.digest, b.digest, `${d.name} served wrong bytes for ${b.digest}`)
    })

    const originBytes = origin.bytesSentTo(/\/blobs\//, 'GET') - blobBytesBefore
    const ratio = originBytes / totalBytes
    const after = await Promise.all(
      daemons.map((d, i) => settledBlobBytes(d, (before[i]?.origin ?? 0) + (before[i]?.peer ?? 0) + totalBytes)),
    )
    const sums = {
      origin: after.reduce((n, b, i) => n + b.origin - (before[i]?.origin ?? 0), 0),
      peer: after.reduce((n, b, i) => n + b.peer - (before[i]?.peer ?? 0), 0),
    }
    const perBlob = blobs.map((b) => {
      const path = `/v2/${repo}/blobs/${b.digest}`
      return {
        blob: b.digest.slice(7, 19),
        size: b.data.length,
        originBytes: origin.bytesSentTo(path, 'GET'),
        ranges: originRanges(origin, path),
        slowestPullMs: Math.max(...results.filter((_, k) => blobs[k % blobs.length] === b).map((r) => r.ms)),
      }
    })
    const report = {
      nodes: NODES,
      imageBytes: totalBytes,
      originBlobBytes: originBytes,
      ratio,
      ms,
      metrics: sums,
      perBlob,
    }
    console.log(
      `cold herd: origin bytes / image bytes = ${ratio.toFixed(3)} (${originBytes} / ${totalBytes}), ${ms} ms`,
    )
    console.log(`cold herd detail: ${JSON.stringify(report)}`)
    assert.ok(
      ratio <= 1.1,
      `origin sent ${originBytes} bytes = ${ratio.toFixed(3)} × the image: ${JSON.stringify(report)}`,
    )
    // The daemons' own books: what came from the origin is what the origin sent, the rest from peers.
    assert.equal(sums.origin + sums.peer, NODES * totalBytes, JSON.stringify(sums))
    assert.equal(sums.origin, originBytes, JSON.stringify(sums))
    // Pieces that came from peers were sent as piece messages and counted both ways in /metrics.
    const pieces = await Promise.all(
      daemons.map(async (d) => {
        const r = await d.admin('/metrics')
        assert.equal(r?.status, 200, `${d.name}: /metrics`)
        const count = (direction: string): number =>
          Number(
            new RegExp(`^shoal_swarm_messages_total\\{direction="${direction}",kind="piece"\\} (\\S+)$`, 'm').exec(
              r?.body ?? '',
            )?.[1] ?? Number.NaN,
          )
        return { sent: count('sent'), received: count('received') }
      }),
    )
    const sent = pieces.reduce((n, p) => n + p.sent, 0)
    const received = pieces.reduce((n, p) => n + p.received, 0)
    assert.ok(received > 0 && sent >= received, `piece messages sent ${sent}, received ${received}`)
  })

  it('one-piece blobs pulled by five at once: the origin serves each once and no pull waits for a claim to expire', async () => {
    // A blob of one piece is complete as soon as its only piece lands: its Have and its commit
    // (fsync, rename) race with the peers that ask for that piece at once.
    const repo = 'herd/small'
    const blobs = [64, 700 * 1024, 3 * MiB + 5].map((n) => origin.addRandomBlob(repo, n))
    const t0 = Date.now()
    const pulls: Promise<PullResult>[] = []
    // Bounded below the 30 s claim timeout: a pull that needs it is stuck behind a stale claim.
    for (const d of daemons) for (const b of blobs) pulls.push(pull(`${d.url}/v2/${repo}/blobs/${b.digest}`, 28_000))
    const results = await Promise.all(pulls)
    const ms = Date.now() - t0
    const perBlob = blobs.map((b) => {
      const path = `/v2/${repo}/blobs/${b.digest}`
      const times = results.filter((_, k) => blobs[k % blobs.length] === b).map((r) => r.error ?? r.ms)
      return { size: b.data.length, ranges: originRanges(origin, path), pullMs: times }
    })
    const detail = JSON.stringify({ ms, perBlob })
    console.log(`cold herd, one-piece blobs: ${detail}`)
    results.forEach((r, k) => {
      const d = daemons[Math.floor(k / blobs.length)] as DaemonProcess
      const b = blobs[k % blobs.length] as { digest: string; data: Buffer }
      assert.equal(r.error, undefined, `${d.name} ${b.digest}: ${r.error}: ${detail}`)
      assert.equal(r.digest, b.digest, `${d.name} served wrong bytes for ${b.digest}`)
    })
    for (const [i, b] of blobs.entries()) {
      const path = `/v2/${repo}/blobs/${b.digest}`
      assert.equal(
        origin.bytesSentTo(path, 'GET'),
        b.data.length,
        `blob ${i} (${b.data.length} bytes) came from the origin more than once: ${detail}`,
      )
    }
    // The claim of a piece holds 30 s (claimTimeoutMs): a pull that took that long waited for one.
    assert.ok(ms < 25_000, `the five pulls took ${ms} ms: ${detail}`)
  })

  it('five daemons serving an image manifest at once fetch its config in the background, from the origin once', async () => {
    const repo = 'herd/prefetch'
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', note: 'prefetched' }))
    const configDigest = origin.addBlob(repo, config)
    const layer = origin.addRandomBlob(repo, 4096)
    origin.addManifest(
      repo,
      {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length },
        layers: [{ mediaType: OCI_LAYER, digest: layer.digest, size: layer.data.length }],
      },
      OCI_MANIFEST,
      ['v1'],
    )
    const before = await Promise.all(daemons.map((d) => d.blobBytes()))
    const manifests = await Promise.all(
      daemons.map((d) => getText(`${d.url}/v2/${repo}/manifests/v1`, 10_000, { accept: OCI_MANIFEST })),
    )
    for (const [i, m] of manifests.entries()) assert.equal(m?.status, 200, daemons[i]?.describe())
    // Nobody asked for the config: each daemon's books still grow by it, from the origin or a peer.
    const after = await Promise.all(
      daemons.map((d, i) => settledBlobBytes(d, (before[i]?.origin ?? 0) + (before[i]?.peer ?? 0) + config.length)),
    )
    const path = `/v2/${repo}/blobs/${configDigest}`
    const detail = JSON.stringify({ ranges: originRanges(origin, path), after, before })
    after.forEach((b, i) => {
      const got = b.origin + b.peer - (before[i]?.origin ?? 0) - (before[i]?.peer ?? 0)
      assert.equal(got, config.length, `${daemons[i]?.name} did not prefetch the config: ${detail}`)
    })
    assert.equal(
      origin.bytesSentTo(path, 'GET'),
      config.length,
      `the config came from the origin more than once: ${detail}`,
    )
    assert.deepEqual(origin.requestsTo(`/v2/${repo}/blobs/${layer.digest}`, 'GET'), [], 'layers are not prefetched')
    // Held on every daemon: served from the cache, right bytes.
    for (const d of daemons) {
      const r = await pull(`${d.url}${path}`, 10_000)
      assert.equal(r.digest, configDigest, d.describe())
      assert.equal(r.source, 'cache', d.describe())
    }
  })

  it('a daemon that starts pulling while a peer already fetches the blob from the origin fetches no piece again', async () => {
    // herd0 starts alone (every piece is its own by rendezvous, it claims all four at once);
    // herd1 starts while those four slow origin fetches are under way. It must take the pieces
    // from herd0 (waiting for their Haves), not fetch them from the origin a second time.
    const repo = 'herd/late'
    const blob = origin.addRandomBlob(repo, 16 * MiB)
    const path = `/v2/${repo}/blobs/${blob.digest}`
    const fault = origin.addFault({ method: 'GET', path, bytesPerSecond: 2 * MiB })
    const [d0, d1] = daemons as [DaemonProcess, DaemonProcess]
    try {
      const first = pull(`${d0.url}${path}`, 60_000)
      await waitFor(
        'herd0 fetching from the origin',
        () => origin.requestsTo(path, 'GET').some((r) => r.bytesSent > 0),
        15_000,
        20,
      )
      const second = pull(`${d1.url}${path}`, 60_000)
      const [r0, r1] = await Promise.all([first, second])
      const detail = JSON.stringify({ ranges: originRanges(origin, path), r0: r0.ms, r1: r1.ms })
      console.log(`cold herd, late joiner: ${detail}`)
      assert.equal(r0.error, undefined, `${r0.error}\n${d0.describe()}`)
      assert.equal(r1.error, undefined, `${r1.error}\n${d1.describe()}`)
      assert.equal(r0.digest, blob.digest)
      assert.equal(r1.digest, blob.digest)
      assert.equal(
        origin.bytesSentTo(path, 'GET'),
        blob.data.length,
        `the origin sent pieces of the blob twice: ${detail}`,
      )
    } finally {
      fault.remove()
    }
  })
})
