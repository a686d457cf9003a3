/**
 * skopeo, containerd (ctr) and podman each pull an image through Shoal from a real
 * docker-registry. The clients know the image under a registry name that is a dead loopback port
 * (they cannot fall back to the origin), with Shoal as that registry's mirror.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Containerd, Podman, skopeoPull } from '../helpers/clients.js'
import { httpGet } from '../helpers/http.js'
import { buildImage, type ImageLayout, KiB, MiB, type PlatformImage, pushImage, sha256 } from '../helpers/image.js'
import { describeRun } from '../helpers/proc.js'
import { assertDead, type Stack, startStack } from '../helpers/stack.js'
import {
  assertContainerd,
  assertOciLayout,
  assertPodmanImage,
  assertServedFromCache,
  imageDescriptors,
  originBlobBytes,
} from '../helpers/verify.js'

const LAYERS = [{ bytes: 3 * MiB, files: 2 }, { bytes: 512 * KiB }, { bytes: 1000 }]

function only(image: ImageLayout): PlatformImage {
  const im = image.images[0]
  assert.ok(im !== undefined)
  return im
}

describe('real clients pull through Shoal from docker-registry (anonymous)', { timeout: 240_000 }, () => {
  let stack: Stack
  /** One image per client, so that each client's pull is a cold one through Shoal. */
  const images: Record<'skopeo' | 'ctr' | 'podman', ImageLayout | undefined> = {
    skopeo: undefined,
    ctr: undefined,
    podman: undefined,
  }
  const repo = (client: string): string => `e2e/${client}-app`

  function image(client: 'skopeo' | 'ctr' | 'podman'): ImageLayout {
    const im = images[client]
    assert.ok(im !== undefined, 'image not built (see the before hook)')
    return im
  }

  before(async () => {
    stack = await startStack()
    for (const client of ['skopeo', 'ctr', 'podman'] as const) {
      const im = await buildImage({ dir: join(stack.work, `img-${client}`), layers: LAYERS })
      await pushImage(im, { registry: stack.origin.host, repo: repo(client) })
      images[client] = im
    }
  })

  after(async () => {
    await stack?.cleanup()
  })

  test('skopeo copy to an oci: layout gets every blob intact, all through Shoal', async () => {
    await assertDead(stack.alias)
    const im = only(image('skopeo'))
    const w = await stack.subdir('skopeo')
    const pull = await skopeoPull({ route: stack.route, repo: repo('skopeo'), workDir: w })
    assert.equal(pull.result.code, 0, describeRun(pull.result))
    await assertOciLayout(pull.out, [im])

    // Shoal saw the manifest and every blob (skopeo sends no ?ns=: the default upstream).
    const reqs = await stack.shoal.requests()
    const ok = (path: string): boolean => reqs.some((r) => r.method === 'GET' && r.url === path && r.status === 200)
    assert.ok(ok(`/v2/${repo('skopeo')}/manifests/v1`), 'Shoal did not serve the manifest by tag')
    for (const d of [im.config, ...im.layers]) {
      assert.ok(ok(`/v2/${repo('skopeo')}/blobs/${d.digest}`), `Shoal did not serve ${d.digest}`)
    }
    // And kept it: asked again directly, Shoal answers from its cache.
    await assertServedFromCache(stack.shoal, repo('skopeo'), [im.config, ...im.layers])
  })

  test('ctr images pull (unpacked with the native snapshotter) gets every blob intact through Shoal', async () => {
    await assertDead(stack.alias)
    const im = only(image('ctr'))
    const ctd = await Containerd.start()
    try {
      const r = await ctd.pull({ route: stack.route, repo: repo('ctr') })
      assert.equal(r.code, 0, `${describeRun(r)}\n${stack.shoal.proc.output(3000)}`)
      // The unpack checked every layer's diff_id; the content store files hash to their names.
      await assertContainerd(ctd, imageDescriptors(im))
    } finally {
      await ctd.cleanup()
    }
    // containerd names the registry with ?ns=<alias> on every request to the mirror.
    const ns = `?ns=${encodeURIComponent(stack.alias)}`
    const reqs = await stack.shoal.requests()
    for (const d of [im.config, ...im.layers]) {
      const path = `/v2/${repo('ctr')}/blobs/${d.digest}${ns}`
      assert.ok(
        reqs.some((r) => r.method === 'GET' && r.url === path && r.status === 200),
        `Shoal did not serve ${path}`,
      )
    }
    await assertServedFromCache(stack.shoal, repo('ctr'), [im.config, ...im.layers], { ns: stack.alias })
  })

  test('podman pull stores the image with the right config, manifest and layer digests', async () => {
    await assertDead(stack.alias)
    const im = only(image('podman'))
    const pod = await Podman.create(stack.route)
    try {
      const r = await pod.pull({ repo: repo('podman') })
      assert.equal(r.code, 0, `${describeRun(r)}\n${stack.shoal.proc.output(3000)}`)
      await assertPodmanImage(pod, pod.imageRef(repo('podman')), im)
    } finally {
      await pod.cleanup()
    }
    await assertServedFromCache(stack.shoal, repo('podman'), [im.config, ...im.layers])
  })

  test('a second pull by another client comes from Shoal’s cache: the origin sent each blob once', async () => {
    // podman pulls what skopeo pulled (both without ?ns=), a second containerd what the first did.
    const a = only(image('skopeo'))
    const pod = await Podman.create(stack.route)
    try {
      const r = await pod.pull({ repo: repo('skopeo') })
      assert.equal(r.code, 0, describeRun(r))
      await assertPodmanImage(pod, pod.imageRef(repo('skopeo')), a)
    } finally {
      await pod.cleanup()
    }
    const b = only(image('ctr'))
    const ctd = await Containerd.start()
    try {
      const r = await ctd.pull({ route: stack.route, repo: repo('ctr') })
      assert.equal(r.code, 0, describeRun(r))
      await assertContainerd(ctd, imageDescriptors(b))
    } finally {
      await ctd.cleanup()
    }
    const origin = await stack.origin.requests()
    for (const d of [a.config, ...a.layers, b.config, ...b.layers]) {
      assert.equal(
        originBlobBytes(origin, d.digest),
        d.size,
        `bytes of ${d.digest} the origin sent (blob size ${d.size})`,
      )
    }
  })

  test('X-Shoal-Source: a blob Shoal never had comes from the origin, then from its cache', async () => {
    const fresh = await buildImage({ dir: join(stack.work, 'img-direct'), layers: [{ bytes: 700 * KiB }] })
    const freshRepo = 'e2e/direct'
    await pushImage(fresh, { registry: stack.origin.host, repo: freshRepo })
    const layer = only(fresh).layers[0]
    assert.ok(layer !== undefined)
    const url = `${stack.shoal.url}/v2/${freshRepo}/blobs/${layer.digest}`
    const first = await httpGet(url)
    assert.equal(first.status, 200)
    assert.equal(first.headers.get('x-shoal-source'), 'origin')
    assert.equal(sha256(first.body), layer.digest)
    const second = await httpGet(url)
    assert.equal(second.status, 200)
    assert.equal(second.headers.get('x-shoal-source'), 'cache')
    assert.equal(sha256(second.body), layer.digest)
  })

  test('three clients pull one cold image with a multi-piece layer at once: all intact, the origin sends each blob once', async () => {
    // 24 MiB: six of Shoal's 4 MiB pieces, so the clients join a transfer in flight.
    const big = await buildImage({
      dir: join(stack.work, 'img-big'),
      layers: [{ bytes: 24 * MiB, files: 3 }, { bytes: 300 * KiB }],
    })
    const bigRepo = 'e2e/big'
    await pushImage(big, { registry: stack.origin.host, repo: bigRepo })
    const im = only(big)
    const w = await stack.subdir('big-skopeo')
    const ctd = await Containerd.start()
    const pod = await Podman.create(stack.route)
    try {
      const [sk, ct, po] = await Promise.all([
        skopeoPull({ route: stack.route, repo: bigRepo, workDir: w }),
        ctd.pull({ route: stack.route, repo: bigRepo }),
        pod.pull({ repo: bigRepo }),
      ])
      assert.equal(sk.result.code, 0, describeRun(sk.result))
      assert.equal(ct.code, 0, describeRun(ct))
      assert.equal(po.code, 0, describeRun(po))
      await assertOciLayout(sk.out, [im])
      await assertContainerd(ctd, imageDescriptors(im))
      await assertPodmanImage(pod, pod.imageRef(bigRepo), im)
    } finally {
      await Promise.all([ctd.cleanup(), pod.cleanup()])
    }
    const origin = await stack.origin.requests()
    for (const d of [im.config, ...im.layers]) {
      assert.equal(
        originBlobBytes(origin, d.digest),
        d.size,
        `bytes of ${d.digest} the origin sent (blob size ${d.size})`,
      )
    }
  })
})
