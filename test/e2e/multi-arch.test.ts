/**
 * A multi-arch image (an OCI index of linux/amd64 and linux/arm64) through Shoal: a
 * single-platform pull gets that platform only, `skopeo copy --all` gets both.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Containerd, Podman, skopeoPull } from '../helpers/clients.js'
import {
  AMD64,
  ARM64,
  buildImage,
  type ImageLayout,
  KiB,
  MiB,
  type PlatformImage,
  platformImage,
  pushImage,
} from '../helpers/image.js'
import { describeRun } from '../helpers/proc.js'
import { assertDead, type Stack, startStack } from '../helpers/stack.js'
import {
  assertContainerd,
  assertOciLayout,
  assertPodmanImage,
  getManifest,
  imageDescriptors,
} from '../helpers/verify.js'

const REPO = 'e2e/multi'

describe('multi-arch image through Shoal', { timeout: 240_000 }, () => {
  let stack: Stack
  let image: ImageLayout | undefined
  const get = (): { image: ImageLayout; amd: PlatformImage; arm: PlatformImage } => {
    assert.ok(image !== undefined, 'image not built (see the before hook)')
    return { image, amd: platformImage(image, 'amd64'), arm: platformImage(image, 'arm64') }
  }

  before(async () => {
    stack = await startStack()
    image = await buildImage({
      dir: join(stack.work, 'img'),
      layers: [{ bytes: 2 * MiB }, { bytes: 64 * KiB, files: 3 }],
      platforms: [AMD64, ARM64],
    })
    await pushImage(image, { registry: stack.origin.host, repo: REPO })
  })

  after(async () => {
    await stack?.cleanup()
  })

  test('Shoal serves the index by tag with its digest and media type', async () => {
    const { image } = get()
    assert.ok(image.index !== undefined)
    const m = await getManifest(stack.shoal, REPO, 'v1')
    assert.equal(m.status, 200)
    assert.equal(m.digest, image.index.digest)
    assert.equal(m.contentType, 'application/vnd.oci.image.index.v1+json')
    assert.equal(m.body.length, image.index.size)
  })

  test('ctr images pull --platform linux/arm64 gets the index and the arm64 image only', async () => {
    await assertDead(stack.alias)
    const { image, amd, arm } = get()
    assert.ok(image.index !== undefined)
    const ctd = await Containerd.start()
    try {
      const r = await ctd.pull({ route: stack.route, repo: REPO, platform: 'linux/arm64' })
      assert.equal(r.code, 0, `${describeRun(r)}\n${stack.shoal.proc.output(3000)}`)
      await assertContainerd(ctd, [image.index, ...imageDescriptors(arm)], imageDescriptors(amd))
    } finally {
      await ctd.cleanup()
    }
  })

  test('skopeo --override-arch arm64 copies the arm64 image only', async () => {
    await assertDead(stack.alias)
    const { amd, arm } = get()
    const w = await stack.subdir('skopeo-arm64')
    const pull = await skopeoPull({ route: stack.route, repo: REPO, workDir: w, arch: 'arm64' })
    assert.equal(pull.result.code, 0, describeRun(pull.result))
    await assertOciLayout(pull.out, [arm], [], [amd])
  })

  test('podman pull --arch arm64 stores the arm64 image', async () => {
    await assertDead(stack.alias)
    const { image, arm } = get()
    const pod = await Podman.create(stack.route)
    try {
      const r = await pod.pull({ repo: REPO, arch: 'arm64' })
      assert.equal(r.code, 0, describeRun(r))
      await assertPodmanImage(pod, pod.imageRef(REPO), arm, image.index)
    } finally {
      await pod.cleanup()
    }
  })

  test('skopeo copy --all gets the index and both platforms, every blob intact', async () => {
    await assertDead(stack.alias)
    const { image, amd, arm } = get()
    assert.ok(image.index !== undefined)
    const w = await stack.subdir('skopeo-all')
    const pull = await skopeoPull({ route: stack.route, repo: REPO, workDir: w, all: true })
    assert.equal(pull.result.code, 0, describeRun(pull.result))
    await assertOciLayout(pull.out, [amd, arm], [image.index])
  })

  test('ctr images pull --all-platforms gets both platforms', async () => {
    await assertDead(stack.alias)
    const { image, amd, arm } = get()
    assert.ok(image.index !== undefined)
    const ctd = await Containerd.start()
    try {
      // content fetch: unpacking an arm64 and an amd64 image into one snapshotter is not the point.
      const r = await ctd.pull({ route: stack.route, repo: REPO, allPlatforms: true, mode: 'fetch' })
      assert.equal(r.code, 0, describeRun(r))
      await assertContainerd(ctd, [image.index, ...imageDescriptors(amd), ...imageDescriptors(arm)])
    } finally {
      await ctd.cleanup()
    }
  })
})
