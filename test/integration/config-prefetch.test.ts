/**
 * Serving an image manifest (GET) starts fetching the image's config into the cache, so a client
 * that asks for the config after the layers (skopeo) finds it held. Only for image
 * manifests, only for configs up to 1 MiB, only on GET; through the client's own access: a private
 * repository's config is fetched with the client's credentials and stays closed to other clients.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  FakeOrigin,
  type FakeOriginOptions,
  OCI_CONFIG,
  OCI_INDEX,
  OCI_LAYER,
  OCI_MANIFEST,
} from '../helpers/fake-origin.js'
import { basic, http, removeDir, type Shoal, sha256, startShoal, tempRoot, waitFor } from './support.js'

/** An image whose config is `configSize` bytes and unlike any other's. */
function addImage(origin: FakeOrigin, repo: string, tag: string, configSize = 200) {
  const json = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', tag }))
  const configData = Buffer.concat([json, Buffer.alloc(Math.max(0, configSize - json.length), 0x20)])
  const config = origin.addBlob(repo, configData)
  const layer = origin.addRandomBlob(repo, 4096)
  const manifest = origin.addManifest(
    repo,
    {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: config, size: configData.length },
      layers: [{ mediaType: OCI_LAYER, digest: layer.digest, size: 4096 }],
    },
    OCI_MANIFEST,
    [tag],
  )
  return { manifest, config: { digest: config, data: configData } }
}

/** The daemon holds the blob: a HEAD answers from the cache. */
async function cached(shoal: Shoal, repo: string, digest: string, headers: Record<string, string> = {}) {
  const r = await http(shoal.url, `/v2/${repo}/blobs/${digest}`, { method: 'HEAD', headers })
  return r.status === 200 && r.headers['x-shoal-source'] === 'cache'
}

/** A fake origin and a daemon in front of it, started and stopped around the calling suite. */
function stack(opts: FakeOriginOptions = {}): { origin: FakeOrigin; shoal: Shoal } {
  const s = {} as { origin: FakeOrigin; shoal: Shoal; root: string | undefined }
  before(async () => {
    s.origin = await FakeOrigin.start(opts)
    s.root = await tempRoot()
    s.shoal = await startShoal({ upstream: s.origin.url, dataDir: `${s.root}/data` })
  })
  after(async () => {
    await s.shoal?.stop()
    await s.origin?.stop()
    await removeDir(s.root)
  })
  return s
}

describe('config prefetch', () => {
  const s = stack()
  const repo = 'pre/fetch'

  test('GET of an image manifest brings its config into the cache; the client then gets it with the origin down', async () => {
    const { origin, shoal } = s
    const img = addImage(origin, repo, 'v1')
    const m = await http(shoal.url, `/v2/${repo}/manifests/v1`)
    assert.equal(m.status, 200)
    await waitFor('the config in the cache', () => cached(shoal, repo, img.config.digest), 10_000, 50)
    const gets = origin.requestsTo(`/v2/${repo}/blobs/${img.config.digest}`, 'GET')
    assert.equal(gets.length, 1, 'one origin GET for the config')
    const down = origin.addFault({ status: 503 })
    try {
      const c = await http(shoal.url, `/v2/${repo}/blobs/${img.config.digest}`)
      assert.equal(c.status, 200)
      assert.equal(c.headers['x-shoal-source'], 'cache')
      assert.equal(sha256(c.body), img.config.digest)
      assert.equal(down.hits, 0, 'the config request reached no origin')
    } finally {
      down.remove()
    }
  })

  test('HEAD of a manifest, an index, a config over 1 MiB and one not named by sha256 start nothing', async () => {
    const { origin, shoal } = s
    const headOnly = addImage(origin, repo, 'head-only')
    const big = addImage(origin, repo, 'big', 1024 * 1024 + 1)
    const child = addImage(origin, repo, 'child')
    origin.addManifest(
      repo,
      {
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [
          {
            mediaType: OCI_MANIFEST,
            digest: child.manifest.digest,
            size: child.manifest.body.length,
            platform: { architecture: 'amd64', os: 'linux' },
          },
        ],
      },
      OCI_INDEX,
      ['index'],
    )
    origin.addManifest(
      repo,
      {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, digest: `sha512:${'ab'.repeat(64)}`, size: 10 },
        layers: [],
      },
      OCI_MANIFEST,
      ['odd-config'],
    )
    const odd = await http(shoal.url, `/v2/${repo}/manifests/odd-config`)
    assert.equal(odd.status, 200)
    assert.ok(odd.complete, 'a config the daemon cannot prefetch leaves the manifest response whole')
    assert.equal((await http(shoal.url, `/v2/${repo}/manifests/head-only`, { method: 'HEAD' })).status, 200)
    assert.equal((await http(shoal.url, `/v2/${repo}/manifests/big`)).status, 200)
    assert.equal((await http(shoal.url, `/v2/${repo}/manifests/index`)).status, 200)
    // The first test shows a prefetch lands in well under a second on loopback.
    await sleep(1_000)
    for (const d of [headOnly.config.digest, big.config.digest, child.config.digest]) {
      assert.deepEqual(origin.requestsTo(`/v2/${repo}/blobs/${d}`), [], `nothing asked for ${d}`)
    }
    assert.deepEqual(origin.requestsTo(/\/blobs\/sha512:/), [], 'nothing asked for the odd config')
  })
})

describe('config prefetch of a private repository', () => {
  const repo = 'corp/private'
  const RIGHT = basic('bob', 'hunter2')
  const s = stack({ auth: 'basic', users: { bob: 'hunter2' }, privateRepos: [repo] })

  test("fetched with the client's credentials, and still closed to a client without them", async () => {
    const { origin, shoal } = s
    const img = addImage(origin, repo, 'v1')
    const headers = { authorization: RIGHT }
    assert.equal((await http(shoal.url, `/v2/${repo}/manifests/v1`, { headers })).status, 200)
    await waitFor('the config in the cache', () => cached(shoal, repo, img.config.digest, headers), 10_000, 50)
    const gets = origin.requestsTo(`/v2/${repo}/blobs/${img.config.digest}`, 'GET')
    assert.equal(gets.length, 1)
    assert.equal(gets[0]?.authorization, RIGHT)
    assert.equal(gets[0]?.status, 206, 'a ranged GET, answered')
    const anon = await http(shoal.url, `/v2/${repo}/blobs/${img.config.digest}`)
    assert.equal(anon.status, 401)
    const c = await http(shoal.url, `/v2/${repo}/blobs/${img.config.digest}`, { headers })
    assert.equal(c.status, 200)
    assert.equal(c.headers['x-shoal-source'], 'cache')
    assert.equal(sha256(c.body), img.config.digest)
  })
})
