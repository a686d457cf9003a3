/**
 * Manifests of the four media types: Content-Type, Docker-Content-Digest and Content-Length on
 * GET and HEAD, by tag and by digest, from the origin and from the cache; what the daemon asks
 * the origin for (Accept); a manifest with wrong bytes is refused.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { DOCKER_LIST, DOCKER_MANIFEST, FakeOrigin, OCI_INDEX, OCI_MANIFEST } from '../helpers/fake-origin.js'
import { type HttpResult, http, ociErrorCode, removeDir, type Shoal, sha256, startShoal, tempRoot } from './support.js'

const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json'
const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar.gzip'

describe('manifest media types', () => {
  let origin: FakeOrigin
  let shoal: Shoal
  let root: string
  const repo = 'media/types'
  const items: { tag: string; mediaType: string; digest: string; body: Buffer }[] = []

  before(async () => {
    origin = await FakeOrigin.start()
    const layer = origin.addRandomBlob(repo, 4096)
    const config = origin.addBlob(repo, Buffer.from('{"architecture":"amd64","os":"linux"}'))
    const ociManifest = origin.addManifest(
      repo,
      {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: 37 },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layer.digest, size: 4096 }],
      },
      OCI_MANIFEST,
      ['oci-manifest'],
    )
    const dockerManifest = origin.addManifest(
      repo,
      {
        schemaVersion: 2,
        mediaType: DOCKER_MANIFEST,
        config: { mediaType: DOCKER_CONFIG, digest: config, size: 37 },
        layers: [{ mediaType: DOCKER_LAYER, digest: layer.digest, size: 4096 }],
      },
      DOCKER_MANIFEST,
      ['docker-manifest'],
    )
    const ociIndex = origin.addManifest(
      repo,
      {
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [
          {
            mediaType: OCI_MANIFEST,
            digest: ociManifest.digest,
            size: ociManifest.body.length,
            platform: { architecture: 'amd64', os: 'linux' },
          },
        ],
      },
      OCI_INDEX,
      ['oci-index'],
    )
    const dockerList = origin.addManifest(
      repo,
      {
        schemaVersion: 2,
        mediaType: DOCKER_LIST,
        manifests: [
          {
            mediaType: DOCKER_MANIFEST,
            digest: dockerManifest.digest,
            size: dockerManifest.body.length,
            platform: { architecture: 'amd64', os: 'linux' },
          },
        ],
      },
      DOCKER_LIST,
      ['docker-list'],
    )
    items.push(
      { tag: 'oci-index', mediaType: OCI_INDEX, ...ociIndex },
      { tag: 'oci-manifest', mediaType: OCI_MANIFEST, ...ociManifest },
      { tag: 'docker-list', mediaType: DOCKER_LIST, ...dockerList },
      { tag: 'docker-manifest', mediaType: DOCKER_MANIFEST, ...dockerManifest },
    )
    root = await tempRoot()
    shoal = await startShoal({ upstream: origin.url, dataDir: join(root, 'data') })
  })

  after(async () => {
    await shoal?.stop()
    await origin?.stop()
    await removeDir(root)
  })

  function assertHeaders(r: HttpResult, item: { mediaType: string; digest: string; body: Buffer }, what: string): void {
    assert.equal(r.status, 200, what)
    assert.equal(r.headers['content-type'], item.mediaType, what)
    assert.equal(r.headers['docker-content-digest'], item.digest, what)
    assert.equal(r.headers['content-length'], String(item.body.length), what)
  }

  for (const first of ['GET', 'HEAD'] as const) {
    test(`each media type, first asked with ${first}: GET and HEAD by tag and digest agree`, async () => {
      // The first round goes to the origin: HEAD first for the index and the Docker manifest.
      const subset = items.filter((_, i) => (first === 'HEAD') === (i % 2 === 0))
      for (const item of subset) {
        for (const ref of [item.tag, item.digest]) {
          const path = `/v2/${repo}/manifests/${ref}`
          const order = first === 'GET' ? (['GET', 'HEAD'] as const) : (['HEAD', 'GET'] as const)
          for (const method of order) {
            const r = await http(shoal.url, path, { method, headers: { accept: item.mediaType } })
            assertHeaders(r, item, `${method} ${ref}`)
            if (method === 'GET') {
              assert.ok(r.complete, r.error)
              assert.deepEqual(r.body, item.body)
              assert.equal(sha256(r.body), item.digest)
            } else {
              assert.equal(r.body.length, 0, `HEAD ${ref} has no body`)
            }
          }
        }
      }
    })
  }

  test('from the cache the headers are the same (all types, GET and HEAD, tag and digest)', async () => {
    for (const item of items) {
      for (const ref of [item.tag, item.digest]) {
        for (const method of ['GET', 'HEAD']) {
          const r = await http(shoal.url, `/v2/${repo}/manifests/${ref}`, { method })
          assertHeaders(r, item, `${method} ${ref}`)
          assert.equal(r.headers['x-shoal-source'], 'cache')
          assert.equal(r.body.length, method === 'GET' ? item.body.length : 0)
        }
      }
    }
  })

  test('the daemon asks the origin for every manifest type (Accept)', () => {
    const reqs = origin.requestsTo(new RegExp(`^/v2/${repo}/manifests/`))
    assert.ok(reqs.length > 0)
    for (const r of reqs) {
      const accept = String(r.headers.accept ?? '')
      for (const t of [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST]) {
        assert.ok(accept.includes(t), `${r.method} ${r.path}: Accept "${accept}" lacks ${t}`)
      }
    }
  })

  test('an origin that names no digest on HEAD: the tag still resolves to the right digest', async () => {
    const m = origin.addManifest(
      'media/nodigest',
      { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] },
      OCI_INDEX,
      ['v1'],
    )
    const fault = origin.addFault({
      path: /^\/v2\/media\/nodigest\/manifests\//,
      dropHeaders: ['docker-content-digest'],
    })
    try {
      const r = await http(shoal.url, '/v2/media/nodigest/manifests/v1')
      assertHeaders(r, { mediaType: OCI_INDEX, ...m }, 'GET v1')
      assert.deepEqual(r.body, m.body)
    } finally {
      fault.remove()
    }
  })

  test('a Content-Type with parameters from the origin is served as the bare media type', async () => {
    const m = origin.addManifest(
      'media/params',
      { schemaVersion: 2, mediaType: OCI_MANIFEST, config: {}, layers: [] },
      `${OCI_MANIFEST}; charset=utf-8`,
      ['v1'],
    )
    const r = await http(shoal.url, '/v2/media/params/manifests/v1')
    assertHeaders(r, { mediaType: OCI_MANIFEST, ...m }, 'GET v1')
  })

  test('a manifest whose bytes do not match its digest is refused and not cached', async () => {
    const m = origin.addManifest(
      'media/corrupt',
      { schemaVersion: 2, mediaType: OCI_MANIFEST, config: {}, layers: [], annotations: { unique: 'corrupt' } },
      OCI_MANIFEST,
      ['v1'],
    )
    const fault = origin.addFault({ method: 'GET', path: /^\/v2\/media\/corrupt\/manifests\//, corruptAt: 5 })
    try {
      for (const ref of ['v1', m.digest]) {
        const r = await http(shoal.url, `/v2/media/corrupt/manifests/${ref}`)
        assert.ok(r.status >= 500, `status ${r.status} for ${ref}`)
        assert.equal(ociErrorCode(r.body), 'DIGEST_INVALID')
      }
    } finally {
      fault.remove()
    }
    const ok = await http(shoal.url, `/v2/media/corrupt/manifests/${m.digest}`)
    assert.equal(ok.status, 200)
    assert.equal(ok.headers['x-shoal-source'], 'origin')
    assert.deepEqual(ok.body, m.body)
  })

  test('an unknown tag and an unknown manifest digest are 404 MANIFEST_UNKNOWN', async () => {
    const t = await http(shoal.url, `/v2/${repo}/manifests/nope`)
    assert.equal(t.status, 404)
    assert.equal(ociErrorCode(t.body), 'MANIFEST_UNKNOWN')
    const d = await http(shoal.url, `/v2/${repo}/manifests/sha256:${'0'.repeat(64)}`)
    assert.equal(d.status, 404)
    assert.equal(ociErrorCode(d.body), 'MANIFEST_UNKNOWN')
    const b = await http(shoal.url, `/v2/${repo}/blobs/sha256:${'0'.repeat(64)}`)
    assert.equal(b.status, 404)
    assert.equal(ociErrorCode(b.body), 'BLOB_UNKNOWN')
  })
})
