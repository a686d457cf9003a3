/**
 * Tag revalidation: a short tag TTL sees a moved tag; an origin that fails or is gone serves the
 * last known digest marked `X-Shoal-Stale: true`; content by digest keeps coming from the cache.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { FakeOrigin, OCI_MANIFEST } from '../helpers/fake-origin.js'
import { http, ociErrorCode, removeDir, type Shoal, sha256, startShoal, tempRoot } from './support.js'

describe('tag revalidation and stale serving', () => {
  let origin: FakeOrigin
  let shoal: Shoal
  let root: string
  const repo = 'tags/app'
  const TTL_MS = 300
  let v1: ReturnType<FakeOrigin['addImage']>
  let v2: { digest: string; body: Buffer }
  const tagPath = `/v2/${repo}/manifests/latest`

  before(async () => {
    origin = await FakeOrigin.start()
    v1 = origin.addImage(repo, 'latest')
    v2 = origin.addManifest(
      repo,
      {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: v1.config.digest, size: 1 },
        layers: [],
        annotations: { version: '2' },
      },
      OCI_MANIFEST,
    )
    root = await tempRoot()
    shoal = await startShoal({ upstream: origin.url, dataDir: join(root, 'data'), tagTtl: `${TTL_MS}ms` })
  })

  after(async () => {
    await shoal?.stop()
    await origin?.stop()
    await removeDir(root)
  })

  test('first pull resolves the tag at the origin; within the TTL the origin is not asked again', async () => {
    const r = await http(shoal.url, tagPath)
    assert.equal(r.status, 200)
    assert.equal(r.headers['docker-content-digest'], v1.manifest.digest)
    assert.equal(r.headers['x-shoal-stale'], undefined)
    const asked = origin.requestsTo(tagPath).length
    assert.ok(asked >= 1)
    const again = await http(shoal.url, tagPath)
    assert.equal(again.status, 200)
    assert.equal(again.headers['docker-content-digest'], v1.manifest.digest)
    assert.equal(again.headers['x-shoal-source'], 'cache')
    assert.equal(origin.requestsTo(tagPath).length, asked)
    const layer = await http(shoal.url, `/v2/${repo}/blobs/${v1.layer.digest}`)
    assert.equal(sha256(layer.body), v1.layer.digest)
  })

  test('after the TTL a tag moved upstream is seen', async () => {
    origin.setTag(repo, 'latest', v2.digest)
    await sleep(TTL_MS + 100)
    const r = await http(shoal.url, tagPath)
    assert.equal(r.status, 200)
    assert.equal(r.headers['docker-content-digest'], v2.digest)
    assert.deepEqual(r.body, v2.body)
    assert.equal(r.headers['x-shoal-stale'], undefined)
    const head = await http(shoal.url, tagPath, { method: 'HEAD' })
    assert.equal(head.headers['docker-content-digest'], v2.digest)
  })

  test('an origin failing with 503 serves the last known digest with X-Shoal-Stale: true', async () => {
    await sleep(TTL_MS + 100)
    const fault = origin.addFault({ path: new RegExp(`^/v2/${repo}/manifests/`), status: 503 })
    try {
      const r = await http(shoal.url, tagPath)
      assert.equal(r.status, 200)
      assert.equal(r.headers['docker-content-digest'], v2.digest)
      assert.equal(r.headers['x-shoal-stale'], 'true')
      assert.deepEqual(r.body, v2.body)
    } finally {
      fault.remove()
    }
  })

  test('with the origin stopped, the tag is served stale and content by digest from the cache', async () => {
    await origin.stop()
    await sleep(TTL_MS + 100)
    const r = await http(shoal.url, tagPath)
    assert.equal(r.status, 200)
    assert.equal(r.headers['docker-content-digest'], v2.digest)
    assert.equal(r.headers['x-shoal-stale'], 'true')
    assert.deepEqual(r.body, v2.body)

    const head = await http(shoal.url, tagPath, { method: 'HEAD' })
    assert.equal(head.status, 200)
    assert.equal(head.headers['x-shoal-stale'], 'true')
    assert.equal(head.headers['docker-content-digest'], v2.digest)

    for (const d of [v1.manifest.digest, v2.digest]) {
      const m = await http(shoal.url, `/v2/${repo}/manifests/${d}`)
      assert.equal(m.status, 200)
      assert.equal(m.headers['docker-content-digest'], d)
      assert.equal(m.headers['x-shoal-source'], 'cache')
      assert.equal(sha256(m.body), d)
    }
    const layer = await http(shoal.url, `/v2/${repo}/blobs/${v1.layer.digest}`)
    assert.equal(layer.status, 200)
    assert.equal(layer.headers['x-shoal-source'], 'cache')
    assert.equal(sha256(layer.body), v1.layer.digest)
  })

  test('with the origin stopped, an unknown tag is 503 UNAVAILABLE and an uncached blob an OCI error', async () => {
    const r = await http(shoal.url, `/v2/${repo}/manifests/never-seen`)
    assert.equal(r.status, 503)
    assert.equal(ociErrorCode(r.body), 'UNAVAILABLE')
    const missing = `sha256:${'ab'.repeat(32)}`
    const b = await http(shoal.url, `/v2/${repo}/blobs/${missing}`)
    assert.ok(b.status === 502 || b.status === 503, `status ${b.status}`)
    assert.equal(ociErrorCode(b.body), 'UNAVAILABLE')
    assert.equal((await http(shoal.url, '/v2/')).status, 200)
  })
})
