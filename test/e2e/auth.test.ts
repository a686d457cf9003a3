/**
 * An origin docker-registry with htpasswd (basic) auth.
 * - Shoal configured with credentials for it serves anonymous clients.
 * - Shoal without credentials for it (a private repository, as far as Shoal is concerned): a
 *   client without credentials is refused (the origin's 401 relayed), a client with credentials
 *   pulls; once the image is cached, a client without credentials is still refused and never gets
 *   a byte of it from the cache.
 *
 * skopeo and podman (containers/image) never send `--src-creds` / `--creds` to a mirror, only the
 * auth file's entry for the mirror's own host; so the user's credentials go in the auth file.
 * ctr sends `--user` to the mirror when it challenges.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Containerd, type MirrorRoute, Podman, skopeoPull } from '../helpers/clients.js'
import { basic, httpGet } from '../helpers/http.js'
import { buildImage, type ImageLayout, KiB, MiB, type PlatformImage, pushImage, sha256 } from '../helpers/image.js'
import { describeRun, httpStatus } from '../helpers/proc.js'
import type { Credentials } from '../helpers/registry.js'
import { type Shoal, startShoal } from '../helpers/shoal.js'
import { assertDead, registryEntries, type Stack, startStack } from '../helpers/stack.js'
import {
  assertContainerd,
  assertOciLayout,
  assertPodmanImage,
  assertServedFromCache,
  getManifest,
  imageDescriptors,
} from '../helpers/verify.js'

const ALICE: Credentials = { username: 'alice', password: 'wonder-land-42' }
const WRONG: Credentials = { username: 'alice', password: 'not-her-password' }
const PUBLIC_REPO = 'e2e/auth-daemon'
const PRIVATE_REPO = 'e2e/private'
const LAYERS = [{ bytes: 2 * MiB, files: 2 }, { bytes: 200 * KiB }]

describe('origin with htpasswd auth', { timeout: 240_000 }, () => {
  /** Origin with auth, and a Shoal that has alice's credentials for it. */
  let stack: Stack
  /** A second Shoal in front of the same origin, without credentials. */
  let bare: Shoal | undefined
  const images: { daemon?: ImageLayout; private?: ImageLayout } = {}
  const im = (which: 'daemon' | 'private'): PlatformImage => {
    const first = images[which]?.images[0]
    assert.ok(first !== undefined, 'image not built (see the before hook)')
    return first
  }
  const bareShoal = (): Shoal => {
    assert.ok(bare !== undefined, 'Shoal without credentials not started (see the before hook)')
    return bare
  }
  const bareRoute = (): MirrorRoute => ({ alias: stack.alias, mirror: bareShoal().host })

  before(async () => {
    stack = await startStack({ registry: { auth: ALICE } })
    images.daemon = await buildImage({ dir: join(stack.work, 'img-daemon'), layers: LAYERS })
    await pushImage(images.daemon, { registry: stack.origin.host, repo: PUBLIC_REPO, creds: ALICE })
    images.private = await buildImage({ dir: join(stack.work, 'img-private'), layers: LAYERS })
    await pushImage(images.private, { registry: stack.origin.host, repo: PRIVATE_REPO, creds: ALICE })
    bare = await startShoal({
      defaultUpstream: stack.origin.url,
      registries: registryEntries(stack.alias, stack.origin),
      ready: (status) => status === 200 || status === 401,
    })
  })

  after(async () => {
    await bare?.cleanup()
    await stack?.cleanup()
  })

  describe('Shoal has the credentials', () => {
    test('the origin refuses anonymous requests (the setup is what it claims)', async () => {
      assert.equal(await httpStatus(`${stack.origin.url}/v2/${PUBLIC_REPO}/manifests/v1`), 401)
    })

    test('skopeo pulls without credentials', async () => {
      await assertDead(stack.alias)
      const w = await stack.subdir('daemon-skopeo')
      const pull = await skopeoPull({ route: stack.route, repo: PUBLIC_REPO, workDir: w })
      assert.equal(pull.result.code, 0, `${describeRun(pull.result)}\n${stack.shoal.proc.output(3000)}`)
      await assertOciLayout(pull.out, [im('daemon')])
    })

    test('ctr pulls without credentials (?ns=alias)', async () => {
      const ctd = await Containerd.start()
      try {
        const r = await ctd.pull({ route: stack.route, repo: PUBLIC_REPO })
        assert.equal(r.code, 0, `${describeRun(r)}\n${stack.shoal.proc.output(3000)}`)
        await assertContainerd(ctd, imageDescriptors(im('daemon')))
      } finally {
        await ctd.cleanup()
      }
    })

    test('podman pulls without credentials', async () => {
      const pod = await Podman.create(stack.route)
      try {
        const r = await pod.pull({ repo: PUBLIC_REPO })
        assert.equal(r.code, 0, `${describeRun(r)}\n${stack.shoal.proc.output(3000)}`)
        await assertPodmanImage(pod, pod.imageRef(PUBLIC_REPO), im('daemon'))
      } finally {
        await pod.cleanup()
      }
    })
  })

  describe('Shoal has no credentials: the repository is private to the clients that have them', () => {
    /** Every way of asking for the private image without (valid) credentials: all refused. */
    async function assertRefusedWithoutCredentials(when: string): Promise<void> {
      const s = bareShoal()
      const p = im('private')
      for (const creds of [undefined, WRONG]) {
        for (const ns of [undefined, stack.alias]) {
          const label = `${when}, ${creds === undefined ? 'no credentials' : 'wrong password'}, ${ns === undefined ? 'no ns' : 'ns=alias'}`
          const opts = { ...(ns === undefined ? {} : { ns }), ...(creds === undefined ? {} : { creds }) }
          for (const ref of ['v1', p.manifest.digest]) {
            const m = await getManifest(s, PRIVATE_REPO, ref, opts)
            assert.equal(m.status, 401, `${label}: GET manifest ${ref}`)
            assert.notEqual(m.digest, p.manifest.digest, `${label}: manifest ${ref} digest leaked`)
            assert.notEqual(sha256(m.body), p.manifest.digest, `${label}: manifest ${ref} served`)
          }
          for (const d of [p.config, ...p.layers]) {
            const q = ns === undefined ? '' : `?ns=${encodeURIComponent(ns)}`
            const headers: Record<string, string> =
              creds === undefined ? {} : { authorization: basic(creds.username, creds.password) }
            const r = await httpGet(`${s.url}/v2/${PRIVATE_REPO}/blobs/${d.digest}${q}`, { headers })
            assert.equal(r.status, 401, `${label}: GET blob ${d.digest}`)
            assert.ok(
              r.body.length < Math.min(d.size, 4096),
              `${label}: blob ${d.digest} answered ${r.body.length} bytes`,
            )
            assert.notEqual(sha256(r.body), d.digest, `${label}: blob ${d.digest} served`)
            const ranged = await httpGet(`${s.url}/v2/${PRIVATE_REPO}/blobs/${d.digest}${q}`, {
              headers: { ...headers, range: 'bytes=0-99' },
            })
            assert.equal(ranged.status, 401, `${label}: ranged GET blob ${d.digest}`)
          }
        }
      }
    }

    test('/v2/ without credentials relays the origin’s challenge', async () => {
      const r = await httpGet(`${bareShoal().url}/v2/`)
      assert.equal(r.status, 401)
      const challenge = r.headers.get('www-authenticate') ?? ''
      assert.match(challenge, /^Basic /i, `WWW-Authenticate: ${challenge}`)
      const withCreds = await httpGet(`${bareShoal().url}/v2/`, {
        headers: { authorization: basic(ALICE.username, ALICE.password) },
      })
      assert.equal(withCreds.status, 200)
    })

    test('before anything is cached: a client without credentials is refused', async () => {
      await assertDead(stack.alias)
      const before = (await bareShoal().requests()).length
      const w = await stack.subdir('private-anon-cold')
      const pull = await skopeoPull({ route: bareRoute(), repo: PRIVATE_REPO, workDir: w })
      assert.notEqual(pull.result.code, 0, 'skopeo pulled a private image without credentials')
      // It was Shoal that refused (the client then tried the dead alias, which tells nothing).
      const reqs = (await bareShoal().requests()).slice(before)
      assert.ok(
        reqs.some((r) => r.status === 401),
        `Shoal answered no 401 to the anonymous client: ${JSON.stringify(reqs)}`,
      )
      assert.ok(
        reqs.every((r) => r.status !== 200 || r.url === '/v2/'),
        `Shoal answered 200 to the anonymous client: ${JSON.stringify(reqs)}`,
      )
      await assertRefusedWithoutCredentials('cold cache')
    })

    test('skopeo with the user’s credentials (auth file) pulls the private image through Shoal', async () => {
      const w = await stack.subdir('private-skopeo-creds')
      const pull = await skopeoPull({ route: bareRoute(), repo: PRIVATE_REPO, workDir: w, creds: ALICE })
      assert.equal(pull.result.code, 0, `${describeRun(pull.result)}\n${bareShoal().proc.output(3000)}`)
      await assertOciLayout(pull.out, [im('private')])
      // Cached now: alice gets it from Shoal's cache.
      await assertServedFromCache(bareShoal(), PRIVATE_REPO, [im('private').config, ...im('private').layers], {
        creds: ALICE,
      })
    })

    test('once cached: a client without credentials is still refused, and gets no byte of it', async () => {
      const w = await stack.subdir('private-anon-warm')
      const pull = await skopeoPull({ route: bareRoute(), repo: PRIVATE_REPO, workDir: w })
      assert.notEqual(pull.result.code, 0, 'skopeo pulled a cached private image without credentials')
      await assertRefusedWithoutCredentials('warm cache')
    })

    test('ctr with --user pulls the private image (?ns=alias); without it, ctr is refused', async () => {
      const anon = await Containerd.start()
      try {
        const r = await anon.pull({ route: bareRoute(), repo: PRIVATE_REPO })
        assert.notEqual(r.code, 0, 'ctr pulled a private image without credentials')
        const got = await anon.contentBlobs()
        for (const d of [im('private').config, ...im('private').layers]) {
          assert.equal(got.ok.has(d.digest), false, `anonymous ctr got ${d.digest}`)
        }
      } finally {
        await anon.cleanup()
      }
      const ctd = await Containerd.start()
      try {
        const r = await ctd.pull({ route: bareRoute(), repo: PRIVATE_REPO, creds: ALICE })
        assert.equal(r.code, 0, `${describeRun(r)}\n${bareShoal().proc.output(3000)}`)
        await assertContainerd(ctd, imageDescriptors(im('private')))
      } finally {
        await ctd.cleanup()
      }
    })

    test('podman with the user’s credentials (auth file) pulls the private image; without, podman is refused', async () => {
      const anon = await Podman.create(bareRoute())
      try {
        const r = await anon.pull({ repo: PRIVATE_REPO })
        assert.notEqual(r.code, 0, 'podman pulled a private image without credentials')
      } finally {
        await anon.cleanup()
      }
      const pod = await Podman.create(bareRoute())
      try {
        const r = await pod.pull({ repo: PRIVATE_REPO, creds: ALICE })
        assert.equal(r.code, 0, `${describeRun(r)}\n${bareShoal().proc.output(3000)}`)
        await assertPodmanImage(pod, pod.imageRef(PRIVATE_REPO), im('private'))
      } finally {
        await pod.cleanup()
      }
    })

    test('origin down: a client without credentials still gets nothing of the cached private image', async () => {
      await stack.origin.stop()
      assert.equal(await httpStatus(`${stack.origin.url}/v2/`, 1_000), undefined, 'the origin still answers')
      const s = bareShoal()
      const p = im('private')
      for (const ref of ['v1', p.manifest.digest]) {
        const m = await getManifest(s, PRIVATE_REPO, ref)
        assert.notEqual(m.status, 200, `GET manifest ${ref} without credentials, origin down`)
        assert.notEqual(sha256(m.body), p.manifest.digest)
      }
      for (const d of [p.config, ...p.layers]) {
        const r = await httpGet(`${s.url}/v2/${PRIVATE_REPO}/blobs/${d.digest}`)
        assert.notEqual(r.status, 200, `GET blob ${d.digest} without credentials, origin down`)
        assert.ok(r.body.length < Math.min(d.size, 4096), `blob ${d.digest} answered ${r.body.length} bytes`)
      }
    })
  })
})
