/**
 * Origin authentication: the bearer-token flow (anonymous and with the daemon's configured
 * credentials), and private repositories the daemon cannot read itself (client credentials
 * forwarded, never cached bytes for clients without them).
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { FakeOrigin } from '../helpers/fake-origin.js'
import { basic, http, ociErrorCode, removeDir, type Shoal, sha256, startShoal, tempRoot } from './support.js'

describe('bearer token auth', () => {
  let origin: FakeOrigin
  let shoal: Shoal
  let root: string
  const NS = 'private.example'

  before(async () => {
    origin = await FakeOrigin.start({
      auth: 'bearer',
      users: { alice: 'secret' },
      privateRepos: ['team/secret'],
    })
    root = await tempRoot()
    shoal = await startShoal({
      upstream: origin.url,
      dataDir: join(root, 'data'),
      // Clients say ?ns=private.example; the daemon fetches from the fake with alice's credentials.
      registries: [{ host: NS, url: origin.url, username: 'alice', password: 'secret' }],
    })
  })

  after(async () => {
    await shoal?.stop()
    await origin?.stop()
    await removeDir(root)
  })

  test('anonymous flow: one token per repository scope, reused for every request', async () => {
    const repo = 'team/public'
    const img = origin.addImage(repo, 'v1')
    const extra = origin.addRandomBlob(repo, 32 * 1024)

    const ping = await http(shoal.url, '/v2/')
    assert.equal(ping.status, 200)
    const byTag = await http(shoal.url, `/v2/${repo}/manifests/v1`)
    assert.equal(byTag.status, 200)
    assert.equal(byTag.headers['docker-content-digest'], img.manifest.digest)
    assert.deepEqual(byTag.body, img.manifest.body)
    const byDigest = await http(shoal.url, `/v2/${repo}/manifests/${img.manifest.digest}`)
    assert.equal(byDigest.status, 200)
    for (const digest of [img.config.digest, img.layer.digest, extra.digest]) {
      const r = await http(shoal.url, `/v2/${repo}/blobs/${digest}`)
      assert.equal(r.status, 200)
      assert.equal(sha256(r.body), digest)
    }
    const head = await http(shoal.url, `/v2/${repo}/blobs/${extra.digest}`, { method: 'HEAD' })
    assert.equal(head.status, 200)

    const scope = `repository:${repo}:pull`
    const tokenReqs = origin.tokenRequests(scope)
    assert.equal(tokenReqs.length, 1, 'the token endpoint was asked more than once for one scope')
    assert.equal(tokenReqs[0]?.authorization, undefined, 'anonymous: no credentials to the token endpoint')
    assert.equal(tokenReqs[0]?.query.get('service'), 'fake')

    const repoReqs = origin.requestsTo(new RegExp(`^/v2/${repo}/`))
    assert.equal(repoReqs.filter((r) => r.status === 401).length, 1, 'only the first request met a challenge')
    const used = new Set(repoReqs.filter((r) => r.status !== 401).map((r) => r.authorization))
    assert.equal(used.size, 1, `tokens used: ${[...used].join(', ')}`)
    assert.match([...used][0] ?? '', /^Bearer tok-/)
    assert.ok(repoReqs.filter((r) => r.status !== 401).length >= 4)
  })

  test('without daemon credentials a private repository is 401 with the origin Bearer challenge', async () => {
    const repo = 'team/secret'
    origin.addImage(repo, 'v1')
    const r = await http(shoal.url, `/v2/${repo}/manifests/v1`)
    assert.equal(r.status, 401)
    assert.equal(ociErrorCode(r.body), 'UNAUTHORIZED')
    const challenge = String(r.headers['www-authenticate'])
    assert.ok(challenge.startsWith(`Bearer realm="${origin.url}/token"`), challenge)
    assert.ok(challenge.includes(`scope="repository:${repo}:pull"`), challenge)
  })

  test('a client doing the token dance itself gets a private repository through the mirror', async () => {
    const repo = 'team/secret'
    const img = origin.addImage(repo, 'v2')
    // What docker/containerd do after the relayed challenge: ask the realm with their credentials.
    const tokenRes = await http(origin.url, `/token?service=fake&scope=repository:${repo}:pull`, {
      headers: { authorization: basic('alice', 'secret') },
    })
    assert.equal(tokenRes.status, 200)
    const { token } = JSON.parse(tokenRes.body.toString()) as { token: string }
    const auth = { authorization: `Bearer ${token}` }
    const m = await http(shoal.url, `/v2/${repo}/manifests/v2`, { headers: auth })
    assert.equal(m.status, 200)
    assert.equal(m.headers['docker-content-digest'], img.manifest.digest)
    const b = await http(shoal.url, `/v2/${repo}/blobs/${img.layer.digest}`, { headers: auth })
    assert.equal(b.status, 200)
    assert.equal(sha256(b.body), img.layer.digest)
    // Cached now; still nothing for a client without a token, or with a bogus one.
    for (const headers of [{}, { authorization: 'Bearer not-a-token' }] as Record<string, string>[]) {
      const nb = await http(shoal.url, `/v2/${repo}/blobs/${img.layer.digest}`, { headers })
      assert.equal(nb.status, 401)
      const nm = await http(shoal.url, `/v2/${repo}/manifests/${img.manifest.digest}`, { headers })
      assert.equal(nm.status, 401)
    }
  })

  test('credentialed flow: registries[].username/password go to the token endpoint', async () => {
    const repo = 'team/secret'
    const img = origin.addImage(repo, 'v3')
    const mark = origin.lastSeq
    const m = await http(shoal.url, `/v2/${repo}/manifests/v3?ns=${NS}`)
    assert.equal(m.status, 200)
    assert.equal(m.headers['docker-content-digest'], img.manifest.digest)
    assert.deepEqual(m.body, img.manifest.body)
    const b = await http(shoal.url, `/v2/${repo}/blobs/${img.layer.digest}?ns=${NS}`)
    assert.equal(b.status, 200)
    assert.equal(sha256(b.body), img.layer.digest)
    const withCreds = origin.tokenRequests(`repository:${repo}:pull`).filter((r) => r.seq > mark)
    assert.equal(withCreds.length, 1, 'one credentialed token, reused')
    assert.equal(withCreds[0]?.user, 'alice')
    assert.equal(withCreds[0]?.authorization, basic('alice', 'secret'))
  })

  test('BUG token cache keyed by URL: credentials of one registry name leak to another name of the same URL', async () => {
    // The default upstream (no credentials) and `private.example` (alice) are the same URL. After
    // the daemon fetched a token with alice's credentials, an anonymous client asking through the
    // default upstream must still be refused.
    const repo = 'team/secret'
    const img = origin.addImage(repo, 'v4')
    const viaCreds = await http(shoal.url, `/v2/${repo}/manifests/v4?ns=${NS}`)
    assert.equal(viaCreds.status, 200)
    const anon = await http(shoal.url, `/v2/${repo}/manifests/v4`)
    assert.equal(
      anon.status,
      401,
      'an anonymous client got a private manifest with the daemon credentials of another name',
    )
    const anonBlob = await http(shoal.url, `/v2/${repo}/blobs/${img.layer.digest}`)
    assert.equal(anonBlob.status, 401)
  })
})

describe('private repository behind basic auth, daemon without credentials', () => {
  let origin: FakeOrigin
  let shoal: Shoal
  let root: string
  const repo = 'corp/private'
  const RIGHT = basic('bob', 'hunter2')
  const WRONG = basic('bob', 'nope')
  let img: ReturnType<FakeOrigin['addImage']>

  before(async () => {
    origin = await FakeOrigin.start({ auth: 'basic', users: { bob: 'hunter2' }, privateRepos: [repo] })
    img = origin.addImage(repo, 'v1')
    root = await tempRoot()
    shoal = await startShoal({ upstream: origin.url, dataDir: join(root, 'data') })
  })

  after(async () => {
    await shoal?.stop()
    await origin?.stop()
    await removeDir(root)
  })

  test('/v2/: 200 anonymously, 401 with the Basic challenge for wrong credentials', async () => {
    assert.equal((await http(shoal.url, '/v2/')).status, 200)
    const wrong = await http(shoal.url, '/v2/', { headers: { authorization: WRONG } })
    assert.equal(wrong.status, 401)
    assert.equal(wrong.headers['www-authenticate'], 'Basic realm="fake"')
    const right = await http(shoal.url, '/v2/', { headers: { authorization: RIGHT } })
    assert.equal(right.status, 200)
  })

  test('no Authorization: 401 with the origin WWW-Authenticate relayed', async () => {
    const r = await http(shoal.url, `/v2/${repo}/manifests/v1`)
    assert.equal(r.status, 401)
    assert.equal(r.headers['www-authenticate'], 'Basic realm="fake"')
    assert.equal(ociErrorCode(r.body), 'UNAUTHORIZED')
    const b = await http(shoal.url, `/v2/${repo}/blobs/${img.layer.digest}`)
    assert.equal(b.status, 401)
    assert.equal(b.headers['www-authenticate'], 'Basic realm="fake"')
  })

  test('wrong credentials: 401', async () => {
    const r = await http(shoal.url, `/v2/${repo}/manifests/v1`, { headers: { authorization: WRONG } })
    assert.equal(r.status, 401)
    assert.equal(ociErrorCode(r.body), 'UNAUTHORIZED')
    const b = await http(shoal.url, `/v2/${repo}/blobs/${img.layer.digest}`, { headers: { authorization: WRONG } })
    assert.equal(b.status, 401)
  })

  test('right credentials: 200 and the content', async () => {
    const headers = { authorization: RIGHT }
    const m = await http(shoal.url, `/v2/${repo}/manifests/v1`, { headers })
    assert.equal(m.status, 200)
    assert.deepEqual(m.body, img.manifest.body)
    assert.equal(m.headers['docker-content-digest'], img.manifest.digest)
    for (const digest of [img.config.digest, img.layer.digest]) {
      const b = await http(shoal.url, `/v2/${repo}/blobs/${digest}`, { headers })
      assert.equal(b.status, 200)
      assert.equal(sha256(b.body), digest)
    }
    // The origin saw the client's credentials, verbatim.
    const gets = origin.requestsTo(`/v2/${repo}/blobs/${img.layer.digest}`, 'GET')
    assert.equal(gets.length, 1)
    assert.equal(gets[0]?.authorization, RIGHT)
  })

  test('after caching: no credentials or wrong ones are still 401, never cached bytes', async () => {
    const paths = [
      `/v2/${repo}/manifests/v1`,
      `/v2/${repo}/manifests/${img.manifest.digest}`,
      `/v2/${repo}/blobs/${img.layer.digest}`,
      `/v2/${repo}/blobs/${img.config.digest}`,
    ]
    for (const headers of [{}, { authorization: WRONG }, { authorization: 'Bearer stolen' }] as Record<
      string,
      string
    >[]) {
      for (const path of paths) {
        for (const method of ['GET', 'HEAD']) {
          const r = await http(shoal.url, path, { method, headers })
          assert.equal(r.status, 401, `${method} ${path} with ${JSON.stringify(headers)}`)
          if (method === 'GET') {
            assert.equal(ociErrorCode(r.body), 'UNAUTHORIZED')
            assert.ok(!r.body.includes(img.layer.data.subarray(0, 64)))
          } else {
            assert.equal(r.body.length, 0)
          }
        }
      }
    }
    // With the right credentials: served, from the cache.
    const ok = await http(shoal.url, `/v2/${repo}/blobs/${img.layer.digest}`, { headers: { authorization: RIGHT } })
    assert.equal(ok.status, 200)
    assert.equal(ok.headers['x-shoal-source'], 'cache')
    assert.equal(sha256(ok.body), img.layer.digest)
  })

  test('BUG cache not scoped to repositories: a private blob is served through a public repository name', async () => {
    // The private layer and manifest are cached (previous tests). The public repository on the
    // same origin does not contain them; a client without credentials asking for them by digest
    // through it must not get the private bytes (the origin would say 404 BLOB_UNKNOWN).
    origin.addImage('corp/public', 'v0')
    const b = await http(shoal.url, `/v2/corp/public/blobs/${img.layer.digest}`)
    assert.notEqual(b.status, 200, 'private layer served to an anonymous client through corp/public')
    assert.ok(!b.body.includes(img.layer.data.subarray(0, 64)))
    const m = await http(shoal.url, `/v2/corp/public/manifests/${img.manifest.digest}`)
    assert.notEqual(m.status, 200, 'private manifest served to an anonymous client through corp/public')
  })

  test('a public repository on the same origin is open to everyone', async () => {
    const pub = origin.addImage('corp/public', 'v1')
    const r = await http(shoal.url, '/v2/corp/public/manifests/v1')
    assert.equal(r.status, 200)
    assert.equal(r.headers['docker-content-digest'], pub.manifest.digest)
    const b = await http(shoal.url, `/v2/corp/public/blobs/${pub.layer.digest}`)
    assert.equal(b.status, 200)
    assert.equal(sha256(b.body), pub.layer.digest)
  })
})
