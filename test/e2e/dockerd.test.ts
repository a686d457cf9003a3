/**
 * A real dockerd (Debian's docker.io 20.10) pulls through Shoal. dockerd mirrors only Docker Hub
 * names and falls back to registry-1.docker.io, so dockerd, Shoal and the origin docker-registry
 * all run in a network namespace that has only loopback and no route out: `docker pull
 * shoaltest:1` can only succeed through Shoal (`--registry-mirror http://127.0.0.1:PORT`), which
 * asks its default upstream, the origin holding `library/shoaltest:1`.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import {
  Dockerd,
  LoopbackNetns,
  type NsRegistry,
  type NsShoal,
  probe,
  pushImageIn,
  startRegistryIn,
  startShoalIn,
} from '../helpers/dockerd.js'
import { buildImage, KiB, MiB, type PlatformImage } from '../helpers/image.js'
import { describeRun, removeTempDir, shortTempDir } from '../helpers/proc.js'
import { originBlobBytes } from '../helpers/verify.js'

/** Inside the namespace every port is free: fixed ones. */
const ORIGIN_PORT = 5100
const SHOAL_PORT = 5101
const REPO = 'library/shoaltest'
const REF = 'shoaltest:1'

describe('dockerd pulls a Docker Hub name through Shoal (network namespace, no route out)', {
  timeout: 120_000,
}, () => {
  let work: string | undefined
  let ns: LoopbackNetns | undefined
  let origin: NsRegistry | undefined
  let shoal: NsShoal | undefined
  let dockerd: Dockerd | undefined
  let im: PlatformImage

  function running(): { ns: LoopbackNetns; origin: NsRegistry; shoal: NsShoal; dockerd: Dockerd } {
    assert.ok(ns !== undefined && origin !== undefined && shoal !== undefined && dockerd !== undefined, 'setup failed')
    return { ns, origin, shoal, dockerd }
  }

  /** Shoal's log, the origin's and dockerd's, for a failure message. */
  async function logs(): Promise<string> {
    const parts = [shoal?.proc.describe(3_000), origin?.proc.describe(2_000), dockerd?.proc.describe(4_000)]
    return parts.filter((p) => p !== undefined).join('\n')
  }

  before(async () => {
    work = await shortTempDir('sh-dkr-')
    ns = await LoopbackNetns.create('sh-dkr')
    origin = await startRegistryIn(ns, join(work, 'origin'), ORIGIN_PORT)
    const image = await buildImage({
      dir: join(work, 'img'),
      layers: [{ bytes: 1 * MiB, files: 2 }, { bytes: 3 * KiB }],
    })
    const first = image.images[0]
    assert.ok(first !== undefined)
    im = first
    await pushImageIn(ns, image, origin.host, `${REPO}:1`)
    shoal = await startShoalIn(ns, join(work, 'shoal'), SHOAL_PORT, origin.url)
    dockerd = await Dockerd.start(ns, { mirror: shoal.host })
  })

  after(async () => {
    // dockerd (and its containerd, and its mounts) first, then Shoal and the origin, all by PID;
    // the namespace last, once nothing runs inside.
    await dockerd?.cleanup()
    await Promise.all([shoal?.stop(), origin?.stop()])
    await ns?.delete()
    await removeTempDir(work)
  })

  test('the namespace has only loopback and no route: a pull Shoal cannot serve fails, docker.io is unreachable', async () => {
    const { ns, shoal, dockerd } = running()
    const net = await ns.describeNetwork()
    assert.equal(net.links.length, 1, `links: ${net.links.join('\n')}`)
    assert.match(net.links[0] ?? '', /^\d+: lo:/)
    assert.deepEqual(
      [...net.routes4, ...net.routes6].filter((r) => !/ dev lo( |$)/.test(r)),
      [],
      'a route through something other than lo',
    )
    assert.ok(
      [...net.routes4, ...net.routes6].every((r) => !r.startsWith('default')),
      `a default route: ${[...net.routes4, ...net.routes6].join('\n')}`,
    )

    // A tag the origin does not have: dockerd asks Shoal (404), falls back to docker.io, which it
    // cannot reach, and fails.
    const r = await dockerd.docker(['pull', 'shoaltest:no-such-tag'], { timeoutMs: 30_000 })
    assert.notEqual(r.code, 0, describeRun(r))
    assert.match(`${r.stdout}${r.stderr}`, /registry-1\.docker\.io/, describeRun(r))
    const reqs = await shoal.requests()
    assert.ok(
      reqs.some((q) => q.url === `/v2/${REPO}/manifests/no-such-tag` && q.status === 404),
      `Shoal did not answer 404 for the missing tag\n${JSON.stringify(reqs)}`,
    )
  })

  test('docker pull shoaltest:1 comes through Shoal: image ID, layers and digest are the pushed ones', async () => {
    const { ns, origin, shoal, dockerd } = running()
    const r = await dockerd.docker(['pull', REF], { timeoutMs: 45_000 })
    assert.equal(r.code, 0, `${describeRun(r)}\n${await logs()}`)
    assert.match(r.stdout, new RegExp(`Digest: ${im.manifest.digest}`), describeRun(r))

    // dockerd's image: its ID is the config digest, its RootFS the diff_ids, its repo digest the
    // manifest's.
    const info = await dockerd.inspectImage(REF)
    assert.equal(info.Id, im.config.digest, 'docker image ID is not the config digest')
    assert.deepEqual(
      info.RootFS.Layers,
      im.layers.map((l) => l.diffId),
      'docker RootFS layers are not the diff_ids',
    )
    assert.ok(
      info.RepoDigests.includes(`shoaltest@${im.manifest.digest}`),
      `RepoDigests ${JSON.stringify(info.RepoDigests)} lack the manifest digest`,
    )
    assert.ok(info.RepoTags.includes(REF), `RepoTags ${JSON.stringify(info.RepoTags)}`)
    assert.equal(info.Architecture, im.platform.architecture)
    assert.equal(info.Os, im.platform.os)
    // Each compressed layer dockerd downloaded (and verified) was applied to the expected diff.
    for (const l of im.layers) {
      assert.equal(await dockerd.diffIdOf(l.digest), l.diffId, `dockerd's diff_id for layer ${l.digest}`)
    }

    // Shoal served the manifest by tag and every blob, under the library/ name dockerd asks for.
    const reqs = await shoal.requests()
    const served = (path: string): boolean =>
      reqs.some((q) => (q.method === 'GET' || q.method === 'HEAD') && q.url === path && q.status === 200)
    assert.ok(served(`/v2/${REPO}/manifests/1`), `Shoal did not serve the manifest by tag\n${JSON.stringify(reqs)}`)
    for (const d of [im.config, ...im.layers]) {
      assert.ok(served(`/v2/${REPO}/blobs/${d.digest}`), `Shoal did not serve ${d.digest}\n${JSON.stringify(reqs)}`)
    }

    // Shoal kept every blob: asked again, it answers from its cache with the exact bytes.
    for (const d of [im.config, ...im.layers]) {
      const reply = await probe(ns, `${shoal.url}/v2/${REPO}/blobs/${d.digest}`)
      assert.ok(reply !== undefined, `no answer from Shoal for ${d.digest}`)
      assert.equal(reply.status, 200, `GET blob ${d.digest} from Shoal: status`)
      assert.equal(reply.headers['x-shoal-source'], 'cache', `GET blob ${d.digest} from Shoal: X-Shoal-Source`)
      assert.equal(reply.size, d.size, `GET blob ${d.digest} from Shoal: length`)
      assert.equal(reply.digest, d.digest, `GET blob ${d.digest} from Shoal: content`)
    }

    // The origin sent each blob once, and only to Shoal: dockerd never spoke to it.
    const originReqs = await origin.requests()
    for (const d of [im.config, ...im.layers]) {
      assert.equal(originBlobBytes(originReqs, d.digest), d.size, `bytes of ${d.digest} the origin sent`)
    }
    const dockerAgents = originReqs.filter((q) => /^docker\//.test(q.userAgent))
    assert.deepEqual(dockerAgents, [], 'dockerd reached the origin directly')
  })

  test('after docker rmi, a second pull is served from Shoal’s cache: the origin sends nothing again', async () => {
    const { origin, shoal, dockerd } = running()
    const rmi = await dockerd.docker(['rmi', REF], { timeoutMs: 20_000 })
    assert.equal(rmi.code, 0, describeRun(rmi))
    const before = (await shoal.requests()).length
    const r = await dockerd.docker(['pull', REF], { timeoutMs: 45_000 })
    assert.equal(r.code, 0, `${describeRun(r)}\n${await logs()}`)
    const info = await dockerd.inspectImage(REF)
    assert.equal(info.Id, im.config.digest)
    assert.deepEqual(
      info.RootFS.Layers,
      im.layers.map((l) => l.diffId),
    )

    const again = (await shoal.requests()).slice(before)
    for (const d of [im.config, ...im.layers]) {
      assert.ok(
        again.some((q) => q.method === 'GET' && q.url === `/v2/${REPO}/blobs/${d.digest}` && q.status === 200),
        `second pull: Shoal did not serve ${d.digest}\n${JSON.stringify(again)}`,
      )
    }
    const originReqs = await origin.requests()
    for (const d of [im.config, ...im.layers]) {
      assert.equal(originBlobBytes(originReqs, d.digest), d.size, `bytes of ${d.digest} the origin sent in all`)
    }
  })
})
