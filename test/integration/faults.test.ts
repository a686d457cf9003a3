/**
 * Origin faults on blob transfers: 5xx bursts, 429 + Retry-After, truncated and wrong bodies,
 * slow bodies, single flight and clients hanging up.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { FakeOrigin } from '../helpers/fake-origin.js'
import {
  http,
  listFiles,
  MiB,
  ociErrorCode,
  PIECE,
  removeDir,
  type Shoal,
  sha256,
  startShoal,
  tempRoot,
  waitFor,
} from './support.js'

function blobPath(repo: string, digest: string): string {
  return `/v2/${repo}/blobs/${digest}`
}

function rangeStart(range: string | undefined): number {
  const m = /^bytes=(\d+)-(\d*)$/.exec(range ?? '')
  assert.ok(m?.[1] !== undefined, `expected a single bytes= range, got ${String(range)}`)
  return Number(m[1])
}

describe('origin faults on blobs', () => {
  let origin: FakeOrigin
  let shoal: Shoal
  let root: string

  before(async () => {
    origin = await FakeOrigin.start()
    root = await tempRoot()
    shoal = await startShoal({ upstream: origin.url, dataDir: join(root, 'data') })
  })

  /**
   * Waits until the daemon has committed a downloaded blob (a HEAD answers from the cache). A GET
   * in the short window before that joins the finished transfer, which is racy (see the BUG test
   * in resources.test.ts); these tests are about something else.
   */
  async function waitUntilCached(path: string): Promise<void> {
    await waitFor(
      `${path} to be committed`,
      async () => (await http(shoal.url, path, { method: 'HEAD' })).headers['x-shoal-source'] === 'cache',
      5_000,
    )
  }

  after(async () => {
    await shoal?.stop()
    await origin?.stop()
    await removeDir(root)
  })

  test('a 503 burst on the blob GET is retried and the client gets the blob', async () => {
    const repo = 'faults/burst-get'
    const { digest } = origin.addRandomBlob(repo, 256 * 1024)
    const path = blobPath(repo, digest)
    const fault = origin.addFault({ method: 'GET', path, status: 503, times: 2 })
    try {
      const r = await http(shoal.url, path)
      assert.equal(r.status, 200)
      assert.ok(r.complete, r.error)
      assert.equal(sha256(r.body), digest)
      assert.equal(r.headers['docker-content-digest'], digest)
      assert.deepEqual(
        origin.requestsTo(path, 'GET').map((x) => x.status),
        [503, 503, 206],
      )
      assert.equal(fault.hits, 2)
    } finally {
      fault.remove()
    }
  })

  test('a 503 burst on every request for the blob (probe, HEAD, GET) is ridden out', async () => {
    const repo = 'faults/burst-all'
    const { digest } = origin.addRandomBlob(repo, 100 * 1024)
    const path = blobPath(repo, digest)
    const fault = origin.addFault({ path, status: 503, times: 3 })
    try {
      const r = await http(shoal.url, path)
      assert.equal(r.status, 200)
      assert.ok(r.complete, r.error)
      assert.equal(sha256(r.body), digest)
      const seen = origin.requestsTo(path)
      assert.deepEqual(
        seen.slice(0, 3).map((x) => x.status),
        [503, 503, 503],
      )
      assert.equal(seen.filter((x) => x.status === 503).length, 3)
      const gets = origin.requestsTo(path, 'GET')
      assert.equal(gets.length, 1)
      assert.equal(gets[0]?.status, 206)
    } finally {
      fault.remove()
    }
  })

  test('an origin answering 503 for good gives the client a 502 OCI error after bounded attempts', async () => {
    const repo = 'faults/down'
    const { digest } = origin.addRandomBlob(repo, 10 * 1024)
    const path = blobPath(repo, digest)
    const fault = origin.addFault({ path, status: 503 })
    try {
      const r = await http(shoal.url, path)
      assert.equal(r.status, 502)
      assert.equal(r.headers['content-type'], 'application/json')
      ociErrorCode(r.body)
      const n = origin.requestsTo(path).length
      assert.ok(n >= 4 && n <= 8, `origin requests for the blob: ${n}`)
      assert.equal(origin.requestsTo(path, 'GET').length, 0)
    } finally {
      fault.remove()
    }
    const ping = await http(shoal.url, '/v2/')
    assert.equal(ping.status, 200)
  })

  test('a 429 with a short Retry-After is waited for, then retried', async () => {
    const repo = 'faults/429-short'
    const { digest } = origin.addRandomBlob(repo, 64 * 1024)
    const path = blobPath(repo, digest)
    const fault = origin.addFault({ method: 'GET', path, status: 429, headers: { 'retry-after': '1' }, times: 1 })
    try {
      const r = await http(shoal.url, path)
      assert.equal(r.status, 200)
      assert.ok(r.complete, r.error)
      assert.equal(sha256(r.body), digest)
      const gets = origin.requestsTo(path, 'GET')
      assert.deepEqual(
        gets.map((x) => x.status),
        [429, 206],
      )
      const [first, second] = gets
      assert.ok(first !== undefined && second !== undefined)
      const waited = second.startedAt - first.startedAt
      assert.ok(waited >= 950, `retried after ${waited} ms, Retry-After was 1 s`)
    } finally {
      fault.remove()
    }
  })

  test('a 429 with a long Retry-After goes to the client as TOOMANYREQUESTS with Retry-After', async () => {
    const repo = 'faults/429-long'
    const { digest } = origin.addRandomBlob(repo, 64 * 1024)
    const path = blobPath(repo, digest)
    const fault = origin.addFault({ path, status: 429, headers: { 'retry-after': '120' } })
    try {
      const r = await http(shoal.url, path)
      assert.equal(r.status, 429)
      assert.equal(r.headers['retry-after'], '120')
      assert.equal(ociErrorCode(r.body), 'TOOMANYREQUESTS')
      assert.ok(r.ms < 3_000, `answered after ${r.ms} ms: a long Retry-After must not be waited for`)
      const head = await http(shoal.url, path, { method: 'HEAD' })
      assert.equal(head.status, 429)
      assert.equal(head.headers['retry-after'], '120')
      assert.equal(head.body.length, 0)
      // Not retried: every origin request for the blob was answered once with 429.
      assert.ok(origin.requestsTo(path).every((x) => x.status === 429))
      assert.ok(origin.requestsTo(path).length <= 4, `origin requests: ${origin.requestsTo(path).length}`)
    } finally {
      fault.remove()
    }
    const ok = await http(shoal.url, path)
    assert.equal(ok.status, 200)
    assert.equal(sha256(ok.body), digest)
  })

  test('BUG a 429 on the blob GET alone (HEAD fine) reaches the client as a hang-up, not 429 + Retry-After', async () => {
    // The daemon's HEAD for the size succeeds, its GET is rate-limited before any byte went to
    // the client: the client must get an HTTP answer it can act on, as for a 429 on the HEAD.
    const repo = 'faults/429-get-only'
    const { digest } = origin.addRandomBlob(repo, 64 * 1024)
    const path = blobPath(repo, digest)
    const fault = origin.addFault({ method: 'GET', path, status: 429, headers: { 'retry-after': '120' } })
    try {
      const r = await http(shoal.url, path)
      assert.equal(r.error, undefined, `no HTTP response at all: ${r.error}`)
      assert.equal(r.status, 429)
      assert.equal(r.headers['retry-after'], '120')
      assert.equal(ociErrorCode(r.body), 'TOOMANYREQUESTS')
    } finally {
      fault.remove()
    }
  })

  test('BUG an origin refusing the blob GET (404 after a 200 HEAD) gives the client a hang-up, not an error', async () => {
    const repo = 'faults/404-get-only'
    const { digest } = origin.addRandomBlob(repo, 64 * 1024)
    const path = blobPath(repo, digest)
    const fault = origin.addFault({ method: 'GET', path, status: 404 })
    try {
      const r = await http(shoal.url, path)
      assert.equal(r.error, undefined, `no HTTP response at all: ${r.error}`)
      assert.ok(r.status >= 400, `status ${r.status}`)
      assert.equal(r.headers['content-type'], 'application/json')
      ociErrorCode(r.body)
    } finally {
      fault.remove()
    }
    const ping = await http(shoal.url, '/v2/')
    assert.equal(ping.status, 200)
  })

  test('a 429 on the manifest GET (rate-limited pulls) reaches the client with Retry-After', async () => {
    const repo = 'faults/429-manifest'
    const img = origin.addImage(repo, 'v1')
    const fault = origin.addFault({
      method: 'GET',
      path: new RegExp(`^/v2/${repo}/manifests/`),
      status: 429,
      headers: { 'retry-after': '3600' },
    })
    try {
      const r = await http(shoal.url, `/v2/${repo}/manifests/v1`)
      assert.equal(r.status, 429)
      assert.equal(r.headers['retry-after'], '3600')
      assert.equal(ociErrorCode(r.body), 'TOOMANYREQUESTS')
    } finally {
      fault.remove()
    }
    const ok = await http(shoal.url, `/v2/${repo}/manifests/v1`)
    assert.equal(ok.status, 200)
    assert.equal(ok.headers['docker-content-digest'], img.manifest.digest)
    assert.deepEqual(ok.body, img.manifest.body)
  })

  test('a body cut mid-blob is resumed with Range from where it stopped', async () => {
    const repo = 'faults/truncated'
    const size = 10 * MiB
    const { digest } = origin.addRandomBlob(repo, size)
    const path = blobPath(repo, digest)
    const cutAt = 6 * MiB
    const fault = origin.addFault({ method: 'GET', path, truncateAfter: cutAt, times: 1 })
    try {
      const r = await http(shoal.url, path, { timeoutMs: 30_000 })
      assert.equal(r.status, 200)
      assert.ok(r.complete, r.error)
      assert.equal(r.body.length, size)
      assert.equal(sha256(r.body), digest)
      const gets = origin.requestsTo(path, 'GET')
      assert.equal(gets.length, 2, `GETs: ${gets.map((g) => g.range).join(' ')}`)
      const [first, second] = gets
      assert.ok(first !== undefined && second !== undefined)
      assert.equal(rangeStart(first.range), 0)
      assert.ok(first.aborted)
      assert.equal(first.bytesSent, cutAt)
      const start = rangeStart(second.range)
      assert.ok(start > 0 && start <= cutAt, `resumed from ${start}, the cut was at ${cutAt}`)
      assert.equal(second.status, 206)
      const total = origin.bytesSentTo(path, 'GET')
      assert.ok(total >= size && total <= size + PIECE, `origin sent ${total} bytes for a ${size}-byte blob`)
    } finally {
      fault.remove()
    }
  })

  test('a resume against an origin that ignores Range still gives the right bytes', async () => {
    const repo = 'faults/ignore-range'
    const size = 9 * MiB
    const { digest } = origin.addRandomBlob(repo, size)
    const path = blobPath(repo, digest)
    const cut = origin.addFault({ method: 'GET', path, truncateAfter: 5 * MiB, times: 1 })
    const ignore = origin.addFault({ method: 'GET', path, ignoreRange: true, skip: 1 })
    try {
      const r = await http(shoal.url, path, { timeoutMs: 30_000 })
      assert.equal(r.status, 200)
      assert.ok(r.complete, r.error)
      assert.equal(sha256(r.body), digest)
      const gets = origin.requestsTo(path, 'GET')
      assert.equal(gets.length, 2)
      assert.equal(gets[1]?.status, 200)
      assert.ok(rangeStart(gets[1]?.range) > 0)
    } finally {
      cut.remove()
      ignore.remove()
    }
  })

  for (const { size, corruptAt, label } of [
    { size: MiB, corruptAt: 1000, label: 'a one-piece blob' },
    { size: 10 * MiB, corruptAt: 5 * MiB + 17, label: 'a multi-piece blob' },
  ]) {
    test(`wrong bytes from the origin (${label}): the client gets an error, nothing is cached`, async () => {
      const repo = `faults/corrupt-${size}`
      const { digest } = origin.addRandomBlob(repo, size)
      const path = blobPath(repo, digest)
      const fault = origin.addFault({ method: 'GET', path, corruptAt, times: 1 })
      try {
        const r = await http(shoal.url, path, { timeoutMs: 30_000 })
        assert.ok(
          r.status >= 500 || !r.complete,
          `a wrong blob must not be delivered as a complete 200 (status ${r.status}, ${r.body.length} bytes)`,
        )
        assert.ok(r.body.length < size || sha256(r.body) !== digest || r.status !== 200)
        if (r.status === 200) assert.ok(r.body.length < size, `client received ${r.body.length} of ${size} bytes`)
        const hex = digest.slice('sha256:'.length)
        assert.equal(existsSync(join(shoal.dataDir, 'blobs', 'sha256', hex)), false, 'the wrong blob was stored')
        assert.equal(fault.hits, 1)
      } finally {
        fault.remove()
      }
      // Not cached: the next request goes to the origin again and, with the fault off, succeeds.
      const again = await http(shoal.url, path, { timeoutMs: 30_000 })
      assert.equal(again.status, 200)
      assert.ok(again.complete, again.error)
      assert.equal(sha256(again.body), digest)
      assert.equal(again.headers['x-shoal-source'], 'origin')
      assert.equal(origin.requestsTo(path, 'GET').length, 2)
      await waitUntilCached(path)
      const third = await http(shoal.url, path)
      assert.equal(third.headers['x-shoal-source'], 'cache')
      assert.ok(third.complete, third.error)
      assert.equal(sha256(third.body), digest)
      assert.equal(origin.requestsTo(path, 'GET').length, 2)
    })
  }

  test('slow body: the client gets its first bytes before the origin has finished', async () => {
    const repo = 'faults/slow'
    const size = 10 * MiB
    const { digest } = origin.addRandomBlob(repo, size)
    const path = blobPath(repo, digest)
    const fault = origin.addFault({ method: 'GET', path, bytesPerSecond: 4 * MiB })
    let originDoneAtFirstByte: boolean | undefined
    try {
      const r = await http(shoal.url, path, {
        timeoutMs: 30_000,
        onFirstByte: () => {
          originDoneAtFirstByte = origin.requestsTo(path, 'GET')[0]?.complete
        },
      })
      assert.equal(r.status, 200)
      assert.ok(r.complete, r.error)
      assert.equal(sha256(r.body), digest)
      assert.equal(originDoneAtFirstByte, false, 'the first byte reached the client only after the origin finished')
      assert.ok(r.firstByteMs !== undefined && r.firstByteMs < 2_000, `first byte after ${r.firstByteMs} ms`)
      assert.ok(r.ms - r.firstByteMs > 500, `first byte ${r.firstByteMs} ms, last ${r.ms} ms`)
    } finally {
      fault.remove()
    }
  })

  test('ten concurrent clients on one uncached blob cause exactly one origin GET', async () => {
    const repo = 'faults/single-flight'
    const size = 10 * MiB
    const { digest } = origin.addRandomBlob(repo, size)
    const path = blobPath(repo, digest)
    const fault = origin.addFault({ method: 'GET', path, bytesPerSecond: 8 * MiB })
    try {
      const results = await Promise.all(Array.from({ length: 10 }, () => http(shoal.url, path, { timeoutMs: 30_000 })))
      for (const r of results) {
        assert.equal(r.status, 200)
        assert.ok(r.complete, r.error)
        assert.equal(sha256(r.body), digest)
      }
      assert.equal(origin.requestsTo(path, 'GET').length, 1)
      assert.equal(origin.bytesSentTo(path, 'GET'), size)
      const sources = results.map((r) => r.headers['x-shoal-source']).sort()
      assert.deepEqual(sources, ['join', 'join', 'join', 'join', 'join', 'join', 'join', 'join', 'join', 'origin'])
    } finally {
      fault.remove()
    }
  })

  test('a client hanging up mid-download does not disturb another client on the same blob', async () => {
    const repo = 'faults/hangup'
    const size = 10 * MiB
    const { digest } = origin.addRandomBlob(repo, size)
    const path = blobPath(repo, digest)
    const fault = origin.addFault({ method: 'GET', path, bytesPerSecond: 5 * MiB })
    try {
      const [quitter, stayer] = await Promise.all([
        http(shoal.url, path, { hangUpAfter: 1, timeoutMs: 30_000 }),
        http(shoal.url, path, { timeoutMs: 30_000 }),
      ])
      assert.equal(quitter.error, 'hung up by the test')
      assert.equal(stayer.status, 200)
      assert.ok(stayer.complete, stayer.error)
      assert.equal(sha256(stayer.body), digest)
      const gets = origin.requestsTo(path, 'GET')
      assert.equal(gets.length, 1)
      assert.equal(gets[0]?.complete, true)
      // The daemon still serves the blob, from its cache, without going back to the origin.
      await waitUntilCached(path)
      const again = await http(shoal.url, path)
      assert.equal(again.status, 200)
      assert.equal(again.headers['x-shoal-source'], 'cache')
      assert.ok(again.complete, again.error)
      assert.equal(sha256(again.body), digest)
      assert.equal(origin.requestsTo(path, 'GET').length, 1)
    } finally {
      fault.remove()
    }
  })

  test('no stray files: the data dir only holds the store', async () => {
    const files = await listFiles(root)
    for (const f of files) {
      assert.ok(f.startsWith('data/'), `file outside the data dir: ${f}`)
    }
  })
})
