/**
 * `shoal pull` end to end: docker-registry as the origin with synthetic images pushed by skopeo,
 * the Shoal daemon as a subprocess, `shoal pull` as a subprocess, and the layout read back by
 * skopeo (`oci:DIR:TAG`) and by `ctr images import` on a private containerd.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import {
  buildImage,
  type Containerd,
  fileDigest,
  freePort,
  pushImage,
  type Registry,
  removeDir,
  runOk,
  type ShoalDaemon,
  type SyntheticImage,
  shoal,
  startContainerd,
  startRegistry,
  startShoal,
  tempDir,
} from './harness.js'

const CREDS = { username: 'puller', password: 's3cret-pw' }
const REF_NAME = 'org.opencontainers.image.ref.name'

interface IndexJson {
  schemaVersion: number
  manifests: {
    mediaType: string
    digest: string
    size: number
    platform?: { os: string; architecture: string }
    annotations?: Record<string, string>
  }[]
}

describe('shoal pull', () => {
  let registry: Registry
  let privateRegistry: Registry
  let daemon: ShoalDaemon
  let containerd: Containerd | undefined
  let work: string
  let single: SyntheticImage
  let multi: SyntheticImage
  let secret: SyntheticImage

  before(async () => {
    work = await tempDir('shc-pull-')
    ;[registry, privateRegistry] = await Promise.all([startRegistry(), startRegistry(CREDS)])
    single = await buildImage(join(work, 'src-single'), '1', ['linux/amd64'], [1_500_000, 200_000])
    multi = await buildImage(join(work, 'src-multi'), '2', ['linux/amd64', 'linux/arm64'], [600_000, 100_000])
    secret = await buildImage(join(work, 'src-secret'), '3', ['linux/amd64'], [300_000])
    await Promise.all([
      pushImage(single, registry.host, 'cli/single'),
      pushImage(multi, registry.host, 'cli/multi'),
      pushImage(secret, privateRegistry.host, 'cli/secret', CREDS),
    ])
    daemon = await startShoal(registry.url)
  })

  after(async () => {
    await containerd?.proc.stop()
    await daemon?.proc.stop()
    await registry?.proc.stop()
    await privateRegistry?.proc.stop()
    for (const d of [containerd?.dir, daemon?.dir, registry?.dir, privateRegistry?.dir, work]) await removeDir(d)
  })

  /** Every blob file is named by its content's sha256; returns the set of digests. */
  async function layoutBlobs(dir: string): Promise<Set<string>> {
    const names = await readdir(join(dir, 'blobs', 'sha256'))
    const out = new Set<string>()
    for (const name of names) {
      assert.equal(await fileDigest(join(dir, 'blobs', 'sha256', name)), `sha256:${name}`, `blob ${name} content`)
      out.add(`sha256:${name}`)
    }
    return out
  }

  async function readIndex(dir: string): Promise<IndexJson> {
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' })
    return JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as IndexJson
  }

  /**
   * skopeo reads the layout: inspect (the digest of what the tag names: the platform's manifest,
   * or the index), then a copy of the platform to dir: with every file checked.
   */
  async function skopeoVerify(
    dir: string,
    tag: string,
    image: SyntheticImage,
    platform: string,
    tagDigest?: string,
  ): Promise<void> {
    const want = image.platforms.find((p) => p.platform === platform)
    assert.ok(want)
    const [os, arch] = platform.split('/') as [string, string]
    const skopeo = ['--insecure-policy', '--override-os', os, '--override-arch', arch]
    const inspect = await runOk('skopeo', [...skopeo, 'inspect', `oci:${dir}:${tag}`])
    const info = JSON.parse(inspect.stdout) as { Digest: string; Layers: string[]; Architecture: string }
    assert.equal(info.Digest, tagDigest ?? want.manifest.digest)
    assert.deepEqual(
      info.Layers,
      want.layers.map((l) => l.digest),
    )
    assert.equal(info.Architecture, arch)
    const out = join(work, `copy-${Math.random().toString(36).slice(2)}`)
    await runOk('skopeo', [...skopeo, 'copy', '--quiet', `oci:${dir}:${tag}`, `dir:${out}`])
    assert.equal(await fileDigest(join(out, 'manifest.json')), want.manifest.digest)
    for (const d of [want.config.digest, ...want.layers.map((l) => l.digest)]) {
      assert.equal(await fileDigest(join(out, d.slice(7))), d)
    }
  }

  test('pulls a single-platform image through the daemon into an OCI layout (plain progress)', async () => {
    const dir = join(work, 'out-single')
    const r = await shoal(['pull', '--mirror', daemon.url, `${registry.host}/cli/single:1`, '-o', dir])
    assert.equal(r.code, 0, r.stderr)
    const img = single.platforms[0]
    assert.ok(img)
    const blobs = [img.config, ...img.layers]
    const lines = r.stdout.trim().split('\n')
    for (const b of blobs) {
      const short = b.digest.slice(0, 19)
      assert.equal(lines.filter((l) => l.startsWith('start') && l.includes(short)).length, 1, r.stdout)
      // The daemon starts fetching the config as soon as it serves the manifest (config
      // prefetch): the pull's own request for it joins that transfer or finds it done.
      const from = b === img.config ? /\b(origin|join|cache)\)$/ : /\borigin\)$/
      const done = lines.filter((l) => l.startsWith('done') && l.includes(short))
      assert.equal(done.length, 1, r.stdout)
      assert.match(done[0] ?? '', from)
    }
    assert.match(lines.at(-1) ?? '', new RegExp(`^pulled .*${img.manifest.digest}, 3 blobs, `))
    const counts = [...(lines.at(-1) ?? '').matchAll(/(origin|join|cache) (\d+)/g)].map((m) => Number(m[2]))
    assert.equal(
      counts.reduce((a, n) => a + n, 0),
      3,
      lines.at(-1),
    )
    const index = await readIndex(dir)
    assert.equal(index.manifests.length, 1)
    const entry = index.manifests[0]
    assert.equal(entry?.digest, img.manifest.digest)
    assert.equal(entry?.size, img.manifest.size)
    assert.equal(entry?.mediaType, 'application/vnd.oci.image.manifest.v1+json')
    assert.equal(entry?.annotations?.[REF_NAME], '1')
    assert.equal(entry?.annotations?.['io.containerd.image.name'], `${registry.host}/cli/single:1`)
    assert.deepEqual(await layoutBlobs(dir), new Set([img.manifest.digest, ...blobs.map((b) => b.digest)]))
    await skopeoVerify(dir, '1', single, 'linux/amd64')
    // Containerd-style: every request named the registry with ?ns=.
    const reqs = (await daemon.requests()).filter((q) => q.url.includes('/cli/single/'))
    assert.equal(reqs.length, 4)
    for (const q of reqs) assert.ok(q.url.endsWith(`?ns=${encodeURIComponent(registry.host)}`), q.url)
  })

  test('a second pull comes from the cache; a re-pull into the same layout skips verified blobs', async () => {
    const dir = join(work, 'out-single-again')
    const r = await shoal(['pull', '--mirror', daemon.url, `${registry.host}/cli/single:1`, '-o', dir])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.split('\n').filter((l) => l.startsWith('done') && l.endsWith('cache)')).length, 3, r.stdout)
    const before = (await daemon.requests()).length
    const again = await shoal(['pull', '--mirror', daemon.url, `${registry.host}/cli/single:1`, '-o', dir])
    assert.equal(again.code, 0, again.stderr)
    assert.equal(again.stdout.split('\n').filter((l) => l.startsWith('exists')).length, 3, again.stdout)
    const blobRequests = (await daemon.requests()).slice(before).filter((q) => q.url.includes('/blobs/'))
    assert.deepEqual(blobRequests, [])
    assert.equal((await readIndex(dir)).manifests.length, 1)
  })

  test("picks this machine's platform (or --platform) from a multi-arch index, digests unchanged", async () => {
    const amd = join(work, 'out-multi-amd64')
    const arm = join(work, 'out-multi-arm64')
    const [a, b] = await Promise.all([
      shoal(['pull', '--mirror', daemon.url, `${registry.host}/cli/multi:2`, '-o', amd]),
      shoal(['pull', '--mirror', daemon.url, `${registry.host}/cli/multi:2`, '-o', arm, '--platform', 'linux/arm64']),
    ])
    assert.equal(a.code, 0, a.stderr)
    assert.equal(b.code, 0, b.stderr)
    for (const [dir, platform] of [
      [amd, 'linux/amd64'],
      [arm, 'linux/arm64'],
    ] as const) {
      const want = multi.platforms.find((p) => p.platform === platform)
      assert.ok(want)
      const index = await readIndex(dir)
      assert.equal(index.manifests[0]?.digest, want.manifest.digest)
      assert.deepEqual(index.manifests[0]?.platform, { architecture: platform.split('/')[1], os: 'linux' })
      assert.deepEqual(
        await layoutBlobs(dir),
        new Set([want.manifest.digest, want.config.digest, ...want.layers.map((l) => l.digest)]),
      )
      await skopeoVerify(dir, '2', multi, platform)
    }
  })

  test('--all-platforms writes the whole index and every platform', async () => {
    const dir = join(work, 'out-multi-all')
    const r = await shoal([
      'pull',
      '--mirror',
      daemon.url,
      `${registry.host}/cli/multi:2`,
      '-o',
      dir,
      '--all-platforms',
    ])
    assert.equal(r.code, 0, r.stderr)
    const index = await readIndex(dir)
    assert.equal(index.manifests[0]?.digest, multi.top.digest)
    assert.equal(index.manifests[0]?.mediaType, 'application/vnd.oci.image.index.v1+json')
    assert.deepEqual(await layoutBlobs(dir), new Set(multi.allDigests))
    const out = join(work, 'copy-all')
    await runOk('skopeo', ['--insecure-policy', 'copy', '--quiet', '--all', `oci:${dir}:2`, `dir:${out}`])
    assert.equal(await fileDigest(join(out, 'manifest.json')), multi.top.digest)
    for (const p of multi.platforms) {
      assert.equal(await fileDigest(join(out, `${p.manifest.digest.slice(7)}.manifest.json`)), p.manifest.digest)
      for (const l of p.layers) assert.equal(await fileDigest(join(out, l.digest.slice(7))), l.digest)
    }
    for (const p of multi.platforms) await skopeoVerify(dir, '2', multi, p.platform, multi.top.digest)
  })

  test('ctr images import reads the layout (as a tar) under the full image name', async () => {
    containerd = await startContainerd()
    const dir = join(work, 'out-multi-arm64')
    const tar = join(work, 'arm64.tar')
    await runOk('tar', ['-C', dir, '-cf', tar, '.'])
    const want = multi.platforms.find((p) => p.platform === 'linux/arm64')
    assert.ok(want)
    const imp = await containerd.ctr(['images', 'import', '--no-unpack', '--platform', 'linux/arm64', tar])
    assert.equal(imp.code, 0, imp.stderr)
    const ls = await containerd.ctr(['images', 'ls'])
    const line = ls.stdout.split('\n').find((l) => l.startsWith(`${registry.host}/cli/multi:2 `))
    assert.ok(line, ls.stdout)
    assert.ok(line.includes(want.manifest.digest), line)
    const content = await containerd.ctr(['content', 'ls', '-q'])
    for (const d of [want.config.digest, ...want.layers.map((l) => l.digest)]) assert.ok(content.stdout.includes(d))
  })

  test('bars on a terminal: per-blob and total bars, then the summary', async () => {
    const dir = join(work, 'out-bars')
    const r = await shoal([
      'pull',
      '--mirror',
      daemon.url,
      `${registry.host}/cli/single:1`,
      '-o',
      dir,
      '--progress',
      'bars',
    ])
    assert.equal(r.code, 0, r.stderr)
    assert.ok(r.stdout.includes('\x1b[2K'), 'redraws lines')
    assert.match(r.stdout, /total +\[#+\] 100% .* 3\/3 blobs/)
    assert.match(r.stdout, /layer +sha256:[0-9a-f]{12} \[#+\] 100% done .* cache/)
    const last = r.stdout.split('\x1b[?25h').at(-1) ?? ''
    assert.match(last, /^pulled .* 3 blobs, .*\n$/, 'cursor shown again, then the summary')
  })

  test('errors: unknown platform, unknown tag, daemon not running, bad options', async () => {
    const dir = join(work, 'out-errors')
    const ref = `${registry.host}/cli/multi:2`
    const noPlatform = await shoal(['pull', '--mirror', daemon.url, ref, '-o', dir, '--platform', 'linux/s390x'])
    assert.equal(noPlatform.code, 1)
    assert.match(noPlatform.stderr, /has no linux\/s390x image \(it has: linux\/amd64, linux\/arm64\)/)
    const noTag = await shoal(['pull', '--mirror', daemon.url, `${registry.host}/cli/multi:nope`, '-o', dir])
    assert.equal(noTag.code, 1)
    assert.match(noTag.stderr, /manifest nope of .*: not found/)
    const dead = await freePort()
    const noDaemon = await shoal(['pull', ref, '-o', dir], { env: { SHOAL_LISTEN: `127.0.0.1:${dead}` } })
    assert.equal(noDaemon.code, 1)
    assert.match(noDaemon.stderr, new RegExp(`cannot reach the Shoal daemon at http://127.0.0.1:${dead}.*--standalone`))
    const both = await shoal(['pull', ref, '-o', dir, '--platform', 'linux/arm64', '--all-platforms'])
    assert.equal(both.code, 2)
    assert.match(both.stderr, /exclude each other/)
    // Nothing half-written: no index.json, no partial files.
    assert.equal(existsSync(join(dir, 'index.json')), false)
    assert.deepEqual(await readdir(join(dir, 'blobs', 'sha256')), [])
  })

  test('standalone pull with an in-process daemon; 401 says credentials are needed, --creds works', async () => {
    const dir = join(work, 'out-standalone')
    const ref = `${privateRegistry.host}/cli/secret:3`
    const args = ['pull', '--standalone', '--data-dir', join(work, 'standalone-data')]
    args.push('--default-upstream', privateRegistry.url, ref, '-o', dir)
    const denied = await shoal(args)
    assert.equal(denied.code, 1)
    assert.match(denied.stderr, /needs credentials for cli\/secret .*--creds USER:PASSWORD/)
    const wrong = await shoal([...args, '--creds', `${CREDS.username}:nope`])
    assert.equal(wrong.code, 1)
    assert.match(wrong.stderr, /refused the credentials given with --creds/)
    const ok = await shoal([...args, '--creds', `${CREDS.username}:${CREDS.password}`])
    assert.equal(ok.code, 0, ok.stderr)
    assert.match(ok.stdout, /through an in-process daemon/)
    await skopeoVerify(dir, '3', secret, 'linux/amd64')
    // The in-process daemon kept what it fetched in its data dir.
    const img = secret.platforms[0]
    assert.ok(img)
    const cached = join(work, 'standalone-data', 'blobs', 'sha256', img.layers[0]?.digest.slice(7) ?? '')
    assert.equal(await fileDigest(cached), img.layers[0]?.digest)
  })

  test('the shoal CLI lists pull in its help', async () => {
    const r = await shoal(['pull', '--help'])
    assert.equal(r.code, 0)
    assert.match(r.stdout, /--all-platforms/)
    assert.match(r.stdout, /--standalone/)
  })
})
