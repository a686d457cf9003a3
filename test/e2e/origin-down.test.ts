/**
 * The origin goes away after a pull: Shoal keeps serving what it cached — a tag from the last
 * known digest (marked `X-Shoal-Stale: true`), a digest as is — to skopeo, podman and containerd,
 * also after Shoal itself restarts. What it never cached is not served.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Containerd, checkDirLayout, Podman, skopeoPull } from '../helpers/clients.js'
import { buildImage, type ImageLayout, KiB, MiB, type PlatformImage, pushImage, sha256 } from '../helpers/image.js'
import { describeRun, httpStatus } from '../helpers/proc.js'
import { type Shoal, startShoal } from '../helpers/shoal.js'
import { assertDead, registryEntries, type Stack, startStack } from '../helpers/stack.js'
import {
  assertBlobs,
  assertContainerd,
  assertOciLayout,
  assertPodmanImage,
  getManifest,
  imageDescriptors,
} from '../helpers/verify.js'

const REPO = 'e2e/offline'
const NEVER = 'e2e/never-pulled'
const TAG_TTL_MS = 1_000

describe('origin down: Shoal serves from its cache', { timeout: 240_000 }, () => {
  let stack: Stack
  let image: ImageLayout | undefined
  let restarted: Shoal | undefined
  const im = (): PlatformImage => {
    const first = image?.images[0]
    assert.ok(first !== undefined, 'image not built (see the before hook)')
    return first
  }
  /** The Shoal in use (the restarted one once the last test restarted it). */
  const shoal = (): Shoal => restarted ?? stack.shoal

  before(async () => {
    stack = await startStack({ shoal: { tagTtl: `${TAG_TTL_MS}ms` } })
    image = await buildImage({
      dir: join(stack.work, 'img'),
      layers: [{ bytes: 2 * MiB, files: 2 }, { bytes: 100 * KiB }],
    })
    await pushImage(image, { registry: stack.origin.host, repo: REPO })
    const never = await buildImage({ dir: join(stack.work, 'never'), layers: [{ bytes: 10 * KiB }] })
    await pushImage(never, { registry: stack.origin.host, repo: NEVER })
  })

  after(async () => {
    await restarted?.cleanup()
    await stack?.cleanup()
  })

  test('while the origin is up, skopeo and ctr pull (this fills the cache)', async () => {
    const w = await stack.subdir('warm-skopeo')
    const pull = await skopeoPull({ route: stack.route, repo: REPO, workDir: w })
    assert.equal(pull.result.code, 0, describeRun(pull.result))
    await assertOciLayout(pull.out, [im()])
    const ctd = await Containerd.start()
    try {
      const r = await ctd.pull({ route: stack.route, repo: REPO })
      assert.equal(r.code, 0, describeRun(r))
      await assertContainerd(ctd, imageDescriptors(im()))
    } finally {
      await ctd.cleanup()
    }
    const m = await getManifest(shoal(), REPO, 'v1')
    assert.equal(m.status, 200)
    assert.equal(m.stale, null, 'a tag revalidated with a reachable origin is not stale')
  })

  test('origin stopped: the tag is served from the last known digest, marked stale', async () => {
    await stack.origin.stop()
    assert.equal(await httpStatus(`${stack.origin.url}/v2/`, 1_000), undefined, 'the origin still answers')
    await sleep(TAG_TTL_MS + 500) // the tag must be revalidated now, and cannot be
    for (const method of ['HEAD', 'GET'] as const) {
      const m = await getManifest(shoal(), REPO, 'v1', { method })
      assert.equal(m.status, 200, `${method} manifest by tag with the origin down`)
      assert.equal(m.digest, im().manifest.digest, `${method}: Docker-Content-Digest`)
      assert.equal(m.stale, 'true', `${method}: X-Shoal-Stale`)
      assert.equal(m.source, 'cache', `${method}: X-Shoal-Source`)
      if (method === 'GET') assert.equal(sha256(m.body), im().manifest.digest)
    }
    // The same for containerd's way of naming the registry.
    const ns = await getManifest(shoal(), REPO, 'v1', { ns: stack.alias })
    assert.equal(ns.status, 200)
    assert.equal(ns.digest, im().manifest.digest)
    assert.equal(ns.stale, 'true')
  })

  test('origin stopped: skopeo pulls by tag', async () => {
    await assertDead(stack.alias)
    const w = await stack.subdir('down-skopeo-tag')
    const pull = await skopeoPull({ route: stack.route, repo: REPO, workDir: w })
    assert.equal(pull.result.code, 0, `${describeRun(pull.result)}\n${shoal().proc.output(3000)}`)
    await assertOciLayout(pull.out, [im()])
  })

  test('origin stopped: skopeo pulls by digest (dir: layout)', async () => {
    const w = await stack.subdir('down-skopeo-digest')
    const pull = await skopeoPull({
      route: stack.route,
      repo: REPO,
      reference: im().manifest.digest,
      workDir: w,
      dest: 'dir',
    })
    assert.equal(pull.result.code, 0, `${describeRun(pull.result)}\n${shoal().proc.output(3000)}`)
    assertBlobs('dir layout', await checkDirLayout(pull.out), [im().config, ...im().layers])
    const manifest = await readFile(join(pull.out, 'manifest.json'))
    assert.equal(sha256(manifest), im().manifest.digest, 'skopeo wrote another manifest than the one pulled')
  })

  test('origin stopped: podman pulls by tag', async () => {
    const pod = await Podman.create(stack.route)
    try {
      const r = await pod.pull({ repo: REPO })
      assert.equal(r.code, 0, `${describeRun(r)}\n${shoal().proc.output(3000)}`)
      await assertPodmanImage(pod, pod.imageRef(REPO), im())
    } finally {
      await pod.cleanup()
    }
  })

  test('origin stopped: ctr pulls by tag (?ns=alias)', async () => {
    const ctd = await Containerd.start()
    try {
      const r = await ctd.pull({ route: stack.route, repo: REPO })
      assert.equal(r.code, 0, `${describeRun(r)}\n${shoal().proc.output(3000)}`)
      await assertContainerd(ctd, imageDescriptors(im()))
    } finally {
      await ctd.cleanup()
    }
  })

  test('origin stopped: an image Shoal never cached is not served', async () => {
    const m = await getManifest(shoal(), NEVER, 'v1')
    assert.notEqual(m.status, 200, 'a manifest never cached was served with the origin down')
    assert.ok(m.status >= 500, `expected a 5xx (origin unreachable), got ${m.status}`)
    const w = await stack.subdir('down-never')
    const pull = await skopeoPull({ route: stack.route, repo: NEVER, workDir: w, timeoutMs: 60_000 })
    assert.notEqual(pull.result.code, 0, 'skopeo pulled an image nobody could serve')
  })

  test('origin stopped and Shoal restarted on the same data dir: still served by tag and digest', async () => {
    const old = stack.shoal
    await old.stop()
    restarted = await startShoal({
      defaultUpstream: stack.origin.url,
      registries: registryEntries(stack.alias, stack.origin),
      tagTtl: `${TAG_TTL_MS}ms`,
      dataDir: old.dataDir,
      port: old.port,
    })
    const m = await getManifest(restarted, REPO, 'v1')
    assert.equal(m.status, 200, 'manifest by tag after a restart with the origin down')
    assert.equal(m.digest, im().manifest.digest)
    assert.equal(m.stale, 'true')
    const w = await stack.subdir('restarted-skopeo')
    const pull = await skopeoPull({ route: stack.route, repo: REPO, workDir: w })
    assert.equal(pull.result.code, 0, `${describeRun(pull.result)}\n${restarted.proc.output(3000)}`)
    await assertOciLayout(pull.out, [im()])
    const w2 = await stack.subdir('restarted-skopeo-digest')
    const byDigest = await skopeoPull({ route: stack.route, repo: REPO, reference: im().manifest.digest, workDir: w2 })
    assert.equal(byDigest.result.code, 0, describeRun(byDigest.result))
    await assertOciLayout(byDigest.out, [im()])
  })
})
