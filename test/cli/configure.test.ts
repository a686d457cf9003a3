/**
 * `shoal configure` with --root in a temp dir: what it writes for each runtime, idempotence,
 * backups and --undo; then the written files USED by real clients: a private containerd
 * (`ctr content fetch --hosts-dir`) and skopeo (`--registries-conf`), with the image's registry
 * name on a dead loopback port so that only Shoal (which maps that name to the real registry)
 * can serve the pull.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import {
  buildImage,
  type Containerd,
  fileDigest,
  freePort,
  parseToml,
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
  type TomlTable,
  tempDir,
} from './harness.js'

describe('shoal configure', () => {
  let registry: Registry
  let daemon: ShoalDaemon
  let containerd: Containerd | undefined
  let work: string
  let image: SyntheticImage
  /** A registry name nobody listens on: a client that bypasses Shoal fails. */
  let deadHost: string

  before(async () => {
    work = await tempDir('shc-cfg-')
    registry = await startRegistry()
    image = await buildImage(join(work, 'src'), '1', ['linux/amd64'], [700_000, 50_000])
    await pushImage(image, registry.host, 'cli/app')
    deadHost = `127.0.0.1:${await freePort()}`
    daemon = await startShoal(registry.url, `registries:\n  - host: ${deadHost}\n    url: ${registry.url}\n`)
  })

  after(async () => {
    await containerd?.proc.stop()
    await daemon?.proc.stop()
    await registry?.proc.stop()
    for (const d of [containerd?.dir, daemon?.dir, registry?.dir, work]) await removeDir(d)
  })

  async function configure(args: string[]): Promise<string> {
    const r = await shoal(['configure', ...args])
    assert.equal(r.code, 0, r.stderr)
    return r.stdout
  }

  /** Contents (or undefined) of every path, to prove a second run touches nothing. */
  async function snapshot(paths: string[]): Promise<(string | undefined)[]> {
    return Promise.all(
      paths.map(async (p) => {
        const text = await readFile(p, 'utf8').catch(() => undefined)
        const st = await stat(p).catch(() => undefined)
        return text === undefined ? undefined : `${st?.mtimeMs} ${text}`
      }),
    )
  }

  test('containerd: hosts.toml per registry, backup, idempotent, used by ctr through Shoal only, undo', async () => {
    const root = join(work, 'root-containerd')
    const certs = join(root, 'etc/containerd/certs.d')
    const hub = join(certs, 'docker.io', 'hosts.toml')
    const dead = join(certs, deadHost, 'hosts.toml')
    const original =
      'server = "https://registry-1.docker.io"\n\n[host."https://mirror.example"]\n  capabilities = ["pull"]\n'
    await mkdir(join(certs, 'docker.io'), { recursive: true })
    await writeFile(hub, original)
    const args = ['containerd', '--root', root, '--mirror', daemon.url, '--registry', 'docker.io', deadHost]
    const first = await configure(args)
    assert.match(first, new RegExp(`backed up ${hub} to ${hub}.shoal-backup`))
    assert.match(first, new RegExp(`updated ${hub}\\n`))
    assert.match(first, new RegExp(`created ${dead.replaceAll('.', '\\.')}\\n`))
    assert.equal(await readFile(`${hub}.shoal-backup`, 'utf8'), original)

    const hubToml = parseToml(await readFile(hub, 'utf8'))
    assert.deepEqual(hubToml, {
      server: 'https://registry-1.docker.io',
      host: { [daemon.url]: { capabilities: ['pull', 'resolve'] } },
    })
    const deadToml = parseToml(await readFile(dead, 'utf8'))
    assert.deepEqual(deadToml, {
      server: `http://${deadHost}`,
      host: { [daemon.url]: { capabilities: ['pull', 'resolve'] } },
    })

    const files = [hub, dead, `${hub}.shoal-backup`]
    const before = await snapshot(files)
    const second = await configure(args)
    assert.match(second, /already configured; nothing changed/)
    assert.deepEqual(await snapshot(files), before)

    // The hosts.toml as containerd reads it: the registry name is a dead port, so the content
    // can only have come through Shoal (which asks the real registry, per its registries entry).
    containerd = await startContainerd()
    const ref = `${deadHost}/cli/app:1`
    const fetch = await containerd.ctr(['content', 'fetch', '--hosts-dir', certs, ref], 60_000)
    assert.equal(fetch.code, 0, `${fetch.stdout}\n${fetch.stderr}`)
    const content = await containerd.ctr(['content', 'ls', '-q'])
    const img = image.platforms[0]
    assert.ok(img)
    for (const d of [img.manifest.digest, img.config.digest, ...img.layers.map((l) => l.digest)]) {
      assert.ok(content.stdout.includes(d), `${d} in containerd's content store`)
    }
    const viaShoal = (await daemon.requests()).filter((q) => q.url.includes(`ns=${encodeURIComponent(deadHost)}`))
    assert.ok(
      viaShoal.some((q) => q.url.includes(`/blobs/${img.layers[0]?.digest}`)),
      'layer fetched via Shoal',
    )

    const undo = await configure(['containerd', '--root', root, '--undo'])
    assert.match(undo, new RegExp(`restored ${hub} from ${hub}.shoal-backup`))
    assert.match(undo, /removed .*hosts\.toml/)
    assert.equal(await readFile(hub, 'utf8'), original)
    assert.equal(existsSync(`${hub}.shoal-backup`), false)
    assert.equal(existsSync(join(certs, deadHost)), false, 'the registry dir shoal created is gone')
    const again = await configure(['containerd', '--root', root, '--undo'])
    assert.match(again, /nothing to undo/)
    assert.equal(await readFile(hub, 'utf8'), original)
  })

  test('docker: registry-mirrors merged into daemon.json (other keys kept), idempotent, undo', async () => {
    const root = join(work, 'root-docker')
    const file = join(root, 'etc/docker/daemon.json')
    const original = `${JSON.stringify({ 'log-driver': 'journald', 'registry-mirrors': ['https://mirror.example'], debug: true })}\n`
    await mkdir(join(root, 'etc/docker'), { recursive: true })
    await writeFile(file, original)
    const first = await configure(['docker', '--root', root, '--mirror', daemon.url])
    assert.match(first, /backed up .*daemon\.json to .*daemon\.json\.shoal-backup/)
    assert.match(first, /systemctl reload docker/)
    assert.deepEqual(JSON.parse(await readFile(file, 'utf8')), {
      'log-driver': 'journald',
      'registry-mirrors': [daemon.url, 'https://mirror.example'],
      debug: true,
    })
    const before = await snapshot([file, `${file}.shoal-backup`])
    assert.match(await configure(['docker', '--root', root, '--mirror', daemon.url]), /nothing changed/)
    assert.deepEqual(await snapshot([file, `${file}.shoal-backup`]), before)
    assert.match(await configure(['docker', '--root', root, '--undo']), /restored .*daemon\.json/)
    assert.equal(await readFile(file, 'utf8'), original)

    // No daemon.json before: created, and removed again by --undo.
    const fresh = join(work, 'root-docker-fresh')
    const created = join(fresh, 'etc/docker/daemon.json')
    assert.match(await configure(['docker', '--root', fresh, '--mirror', daemon.url]), /created .*daemon\.json/)
    assert.deepEqual(JSON.parse(await readFile(created, 'utf8')), { 'registry-mirrors': [daemon.url] })
    assert.equal(existsSync(`${created}.shoal-backup`), false)
    assert.match(await configure(['docker', '--root', fresh, '--mirror', daemon.url, '--undo']), /removed .*daemon/)
    assert.equal(existsSync(created), false)

    // docker mirrors Docker Hub only; broken JSON is not overwritten.
    const other = await shoal(['configure', 'docker', '--root', fresh, '--registry', 'ghcr.io'])
    assert.equal(other.code, 2)
    assert.match(other.stderr, /docker mirrors Docker Hub only; ghcr\.io need containerd or podman/)
    await writeFile(created, '{ "debug": tru')
    const broken = await shoal(['configure', 'docker', '--root', fresh])
    assert.equal(broken.code, 2)
    assert.match(broken.stderr, /daemon\.json is not valid JSON/)
    assert.equal(await readFile(created, 'utf8'), '{ "debug": tru')
  })

  test('podman: registries.conf.d/shoal.conf, idempotent, used by skopeo through Shoal only, undo', async () => {
    const root = join(work, 'root-podman')
    const file = join(root, 'etc/containers/registries.conf.d/shoal.conf')
    const args = ['podman', '--root', root, '--mirror', daemon.url, '--registry', deadHost, 'docker.io']
    const first = await configure(args)
    assert.match(first, /created .*shoal\.conf/)
    const conf = parseToml(await readFile(file, 'utf8'))
    const mirrorHost = new URL(daemon.url).host
    assert.deepEqual(conf.registry, [
      { prefix: deadHost, location: deadHost, insecure: true, mirror: [{ location: mirrorHost, insecure: true }] },
      {
        prefix: 'docker.io',
        location: 'registry-1.docker.io',
        mirror: [{ location: mirrorHost, insecure: true }],
      },
    ] satisfies TomlTable[])
    const before = await snapshot([file])
    assert.match(await configure(args), /nothing changed/)
    assert.deepEqual(await snapshot([file]), before)

    // skopeo pulls the dead-port name through the mirror; Shoal serves it from its default
    // upstream (skopeo sends no ?ns=), which is the real registry.
    const since = (await daemon.requests()).length
    const out = join(work, 'skopeo-out')
    await runOk(
      'skopeo',
      [
        '--registries-conf',
        file,
        '--insecure-policy',
        'copy',
        '--quiet',
        `docker://${deadHost}/cli/app:1`,
        `dir:${out}`,
      ],
      { timeoutMs: 60_000 },
    )
    const img = image.platforms[0]
    assert.ok(img)
    assert.equal(await fileDigest(join(out, 'manifest.json')), img.manifest.digest)
    for (const l of img.layers) assert.equal(await fileDigest(join(out, l.digest.slice(7))), l.digest)
    const reqs = (await daemon.requests()).slice(since)
    assert.ok(
      reqs.some((q) => q.url.startsWith('/v2/cli/app/manifests/1') && q.status === 200),
      'manifest via Shoal',
    )

    assert.match(await configure(['podman', '--root', root, '--undo']), /removed .*shoal\.conf/)
    assert.equal(existsSync(file), false)
    // A shoal.conf shoal did not write is backed up, and restored by --undo.
    await writeFile(file, 'unqualified-search-registries = ["example.com"]\n')
    assert.match(await configure(args), /backed up .*shoal\.conf/)
    assert.match(await configure(['podman', '--root', root, '--undo']), /restored .*shoal\.conf/)
    assert.equal(await readFile(file, 'utf8'), 'unqualified-search-registries = ["example.com"]\n')
  })

  test('bad input: unknown runtime, bad registry name', async () => {
    const runtime = await shoal(['configure', 'cri-o', '--root', work])
    assert.equal(runtime.code, 2)
    assert.match(runtime.stderr, /unknown runtime "cri-o" \(expected containerd, docker, podman\)/)
    const reg = await shoal(['configure', 'containerd', '--root', work, '--registry', 'not a host'])
    assert.equal(reg.code, 2)
    assert.match(reg.stderr, /not a registry host/)
  })
})
