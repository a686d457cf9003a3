/**
 * Operating the daemon: the admin listener and the CLI that talks to it (`status`, `gc`,
 * `preheat`, `keygen`), with real daemons as subprocesses and the CLI run as subprocesses.
 *
 * 1. /metrics and `shoal status` follow a real pull (origin, then cache).
 * 2. GC keeps the cache under --cache-max while twice the quota is pulled through it.
 * 3. A blob being read by a slow client survives GC (automatic and `shoal gc`).
 * 4. `shoal preheat --peers all` fills the local cache and a peer's.
 * 5. `shoal keygen` writes a pnet key with mode 0600 and never overwrites it.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readdir, readFile, stat } from 'node:fs/promises'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { FakeOrigin, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST } from '../helpers/fake-origin.js'
import { http, MiB, removeDir, sha256, tempRoot, waitFor } from '../integration/support.js'

const HERE = dirname(fileURLToPath(import.meta.url))
/** dist/test/ops → dist/src/cli/main.js */
const CLI = resolve(HERE, '../../src/cli/main.js')

// ---------------------------------------------------------------------------------------------
// processes

interface Daemon {
  readonly child: ChildProcess
  readonly url: string
  /** `127.0.0.1:PORT` of the admin listener. */
  readonly admin: string
  readonly adminUrl: string
  readonly dataDir: string
  readonly p2pPort: number | undefined
  /** What the daemon wrote on stderr (for failure messages). */
  stderr(): string
}

const daemons: Daemon[] = []
const roots: string[] = []

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      const port = typeof a === 'object' && a !== null ? a.port : 0
      s.close(() => resolvePort(port))
    })
  })
}

async function newRoot(): Promise<string> {
  const root = await tempRoot('shoal-ops-')
  roots.push(root)
  return root
}

interface DaemonOptions {
  upstream: string
  cacheMax?: string
  p2p?: boolean
  bootstrapPort?: number
}

async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const root = await newRoot()
  const dataDir = join(root, 'data')
  const port = await freePort()
  const adminPort = await freePort()
  const args = [
    CLI,
    'daemon',
    '--listen',
    `127.0.0.1:${port}`,
    '--data-dir',
    dataDir,
    '--default-upstream',
    opts.upstream,
    '--admin-listen',
    `127.0.0.1:${adminPort}`,
    '--log-level',
    'warn',
  ]
  if (opts.cacheMax !== undefined) args.push('--cache-max', opts.cacheMax)
  let p2pPort: number | undefined
  if (opts.p2p === true) {
    p2pPort = await freePort()
    args.push('--p2p-listen', `/ip4/127.0.0.1/tcp/${p2pPort}`)
    if (opts.bootstrapPort !== undefined) args.push('--bootstrap', `/ip4/127.0.0.1/tcp/${opts.bootstrapPort}`)
  }
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr?.on('data', (c: Buffer) => {
    if (err.length < 64 * 1024) err += c.toString('utf8')
  })
  const d: Daemon = {
    child,
    url: `http://127.0.0.1:${port}`,
    admin: `127.0.0.1:${adminPort}`,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    dataDir,
    p2pPort,
    stderr: () => err,
  }
  daemons.push(d)
  await waitFor(
    'the daemon to answer /v2/ and /healthz',
    async () => {
      if (child.exitCode !== null) throw new Error(`daemon exited with ${child.exitCode}: ${err}`)
      const v2 = await http(d.url, '/v2/', { timeoutMs: 1_000 })
      if (v2.status !== 200) return false
      const h = await http(d.adminUrl, '/healthz', { timeoutMs: 1_000 })
      return h.status === 200
    },
    15_000,
    50,
  )
  return d
}

/** SIGTERM by PID, SIGKILL after 5 s; bounded. */
async function stopDaemon(d: Daemon): Promise<void> {
  const c = d.child
  if (c.exitCode !== null || c.signalCode !== null || c.pid === undefined) return
  const exited = new Promise<void>((r) => c.once('exit', () => r()))
  process.kill(c.pid, 'SIGTERM')
  const done = await Promise.race([exited.then(() => true), sleep(5_000, false, { ref: false })])
  if (!done && c.exitCode === null && c.signalCode === null) {
    process.kill(c.pid, 'SIGKILL')
    await Promise.race([exited, sleep(3_000, undefined, { ref: false })])
  }
}

interface CliResult {
  code: number
  stdout: string
  stderr: string
}

function cli(args: readonly string[], timeoutMs = 30_000): Promise<CliResult> {
  return new Promise((resolveCli) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 4 * MiB },
      (error, stdout, stderr) => {
        let code = 0
        if (error !== null) code = typeof error.code === 'number' ? error.code : -1
        resolveCli({ code, stdout, stderr })
      },
    )
  })
}

after(async () => {
  await Promise.all(daemons.map((d) => stopDaemon(d)))
  for (const r of roots) await removeDir(r)
})

// ---------------------------------------------------------------------------------------------
// small helpers

/** `shoal_blob_bytes_total{source=...}` from the admin listener's /metrics. */
async function blobBytes(d: Daemon): Promise<Record<'origin' | 'peer' | 'cache', number>> {
  const r = await http(d.adminUrl, '/metrics', { timeoutMs: 5_000 })
  assert.equal(r.status, 200, `GET /metrics: ${r.status}`)
  const text = r.body.toString('utf8')
  const read = (source: string): number => {
    const m = new RegExp(`^shoal_blob_bytes_total\\{source="${source}"\\} (\\S+)$`, 'm').exec(text)
    assert.ok(m?.[1] !== undefined, `no shoal_blob_bytes_total{source="${source}"} in:\n${text}`)
    return Number(m[1])
  }
  return { origin: read('origin'), peer: read('peer'), cache: read('cache') }
}

/** Sum of the sizes of the files in DATA/blobs/sha256, and their names. */
async function cacheFiles(d: Daemon): Promise<{ total: number; names: Set<string> }> {
  const dir = join(d.dataDir, 'blobs', 'sha256')
  let total = 0
  const names = new Set<string>()
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (!e.isFile()) continue
    try {
      total += (await stat(join(dir, e.name))).size
      names.add(e.name)
    } catch {
      // deleted by GC between readdir and stat
    }
  }
  return { total, names }
}

function hexOf(digest: string): string {
  return digest.replace(/^sha256:/, '')
}

/** A full GET of a blob through /v2/, asserted complete and with the right digest. */
async function pullBlob(d: Daemon, repo: string, digest: string): Promise<{ source: string; size: number }> {
  const r = await http(d.url, `/v2/${repo}/blobs/${digest}`, { timeoutMs: 20_000 })
  assert.equal(r.status, 200, `GET blob ${digest}: ${r.status} ${r.error ?? ''}`)
  assert.ok(r.complete, `GET blob ${digest}: ${r.error ?? 'incomplete'}`)
  assert.equal(sha256(r.body), digest)
  const source = r.headers['x-shoal-source']
  return { source: typeof source === 'string' ? source : '', size: r.body.length }
}

// ---------------------------------------------------------------------------------------------

describe('ops: admin listener and CLI', () => {
  let origin: FakeOrigin

  before(async () => {
    origin = await FakeOrigin.start()
  })

  after(async () => {
    await origin.stop()
  })

  test('metrics and `shoal status` follow a real pull: origin first, then cache', async () => {
    const d = await startDaemon({ upstream: origin.url })
    const size = 12 * MiB
    const { digest } = origin.addRandomBlob('ops/metrics', size)

    const m0 = await blobBytes(d)
    assert.deepEqual(m0, { origin: 0, peer: 0, cache: 0 })

    const first = await pullBlob(d, 'ops/metrics', digest)
    assert.equal(first.source, 'origin')
    await waitFor('origin bytes to reach the blob size', async () => (await blobBytes(d)).origin === size, 3_000, 50)
    const m1 = await blobBytes(d)
    assert.deepEqual(m1, { origin: size, peer: 0, cache: 0 })

    const second = await pullBlob(d, 'ops/metrics', digest)
    assert.equal(second.source, 'cache')
    await waitFor('cache bytes to reach the blob size', async () => (await blobBytes(d)).cache === size, 3_000, 50)
    const m2 = await blobBytes(d)
    assert.deepEqual(m2, { origin: size, peer: 0, cache: size })

    const text = await cli(['status', '--admin', d.admin])
    assert.equal(text.code, 0, text.stderr)
    const line = text.stdout.split('\n').find((l) => l.includes('blob bytes:'))
    assert.ok(line !== undefined, `no "blob bytes:" line in:\n${text.stdout}`)
    assert.match(line, /origin 12\.0 MiB/)
    assert.match(line, /peers 0\.0 MiB/)
    assert.match(line, /cache 12\.0 MiB/)
    assert.match(text.stdout, /peer id:\s+\(swarm off\)/)

    const json = await cli(['status', '--admin', d.admin, '--json'])
    assert.equal(json.code, 0, json.stderr)
    const s = JSON.parse(json.stdout) as { bytesBySource: Record<string, number>; transfers: number }
    assert.deepEqual(s.bytesBySource, { origin: size, peer: 0, cache: size })
    assert.equal(s.transfers, 0)
  })

  test('GC keeps the cache under --cache-max while twice the quota is pulled', async () => {
    const quota = 40_000_000
    const blobSize = 10_000_000
    const d = await startDaemon({ upstream: origin.url, cacheMax: '40MB' })
    const digests: string[] = []
    for (let i = 0; i < 8; i++) digests.push(origin.addBlob('ops/gc', randomBytes(blobSize)))

    let peak = 0
    for (const digest of digests) {
      const r = await pullBlob(d, 'ops/gc', digest)
      assert.equal(r.source, 'origin')
      const { total } = await cacheFiles(d)
      peak = Math.max(peak, total)
      assert.ok(total <= quota + blobSize, `cache ${total} bytes after pulling ${digest}: above ${quota} + ${blobSize}`)
    }
    assert.ok(peak > 0)

    const gc = await cli(['gc', '--admin', d.admin])
    assert.equal(gc.code, 0, gc.stderr)
    assert.match(gc.stdout, /deleted \d+ blobs/)
    assert.match(gc.stdout, new RegExp(`of ${quota}\\b`))
    const { total, names } = await cacheFiles(d)
    assert.ok(total <= quota, `cache ${total} bytes after shoal gc: above ${quota}`)
    // LRU: the most recent blob is kept.
    const last = digests.at(-1)
    assert.ok(last !== undefined && names.has(hexOf(last)), 'the blob pulled last was collected')
    // 80 MB went through a 40 MB cache: at least half of the blobs are gone.
    assert.ok(names.size <= 4, `${names.size} blobs left in a 40 MB cache`)

    const status = await cli(['status', '--admin', d.admin, '--json'])
    assert.equal(status.code, 0, status.stderr)
    const s = JSON.parse(status.stdout) as { cache: { usedBytes: number; quotaBytes: number } | null }
    assert.ok(s.cache !== null)
    assert.equal(s.cache.quotaBytes, quota)
    assert.ok(s.cache.usedBytes <= quota)
  })

  test('a blob a client is reading survives GC, and the client gets every byte', async () => {
    const quota = 40_000_000
    const d = await startDaemon({ upstream: origin.url, cacheMax: '40MB' })
    const slowData = randomBytes(20_000_000)
    const slow = origin.addBlob('ops/pin', slowData)
    const others: string[] = []
    for (let i = 0; i < 4; i++) others.push(origin.addBlob('ops/pin', randomBytes(10_000_000)))

    // Cache it: it is then the least recently used blob, GC's first victim.
    await pullBlob(d, 'ops/pin', slow)
    assert.ok((await cacheFiles(d)).names.has(hexOf(slow)))

    // A client that reads one chunk, then stops reading.
    const hash = createHash('sha256')
    let received = 0
    let resumeReading: (() => void) | undefined
    let firstChunk: () => void = () => {}
    const gotFirst = new Promise<void>((r) => {
      firstChunk = r
    })
    const done = new Promise<{ status: number; source: string; error: string | undefined }>((resolveDone) => {
      const req = request({ host: '127.0.0.1', port: Number(new URL(d.url).port), path: `/v2/ops/pin/blobs/${slow}` })
      const timer = setTimeout(() => {
        req.destroy()
        resolveDone({ status: 0, source: '', error: 'timeout' })
      }, 45_000)
      req.on('error', (err) => {
        clearTimeout(timer)
        resolveDone({ status: 0, source: '', error: err.message })
      })
      req.on('response', (res) => {
        const source = typeof res.headers['x-shoal-source'] === 'string' ? res.headers['x-shoal-source'] : ''
        let paused = false
        res.on('data', (chunk: Buffer) => {
          hash.update(chunk)
          received += chunk.length
          if (!paused) {
            paused = true
            res.pause()
            resumeReading = () => res.resume()
            firstChunk()
          }
        })
        res.on('end', () => {
          clearTimeout(timer)
          resolveDone({ status: res.statusCode ?? 0, source, error: undefined })
        })
        res.on('error', (err) => {
          clearTimeout(timer)
          resolveDone({ status: res.statusCode ?? 0, source, error: err.message })
        })
      })
      req.end()
    })
    await Promise.race([
      gotFirst,
      sleep(10_000, undefined, { ref: false }).then(() => {
        throw new Error('no first chunk within 10 s')
      }),
    ])
    await sleep(200)
    const before = received
    assert.ok(before < slowData.length / 2, `the client was meant to stall, yet it has ${before} bytes`)

    // 20 MB + 4 × 10 MB = 60 MB through a 40 MB cache: GC must delete something.
    for (const digest of others) await pullBlob(d, 'ops/pin', digest)
    const gc = await cli(['gc', '--admin', d.admin])
    assert.equal(gc.code, 0, gc.stderr)
    assert.match(gc.stdout, /deleted \d+ blobs/)

    const files = await cacheFiles(d)
    assert.ok(files.names.has(hexOf(slow)), 'the blob being read was collected')
    const first = others[0]
    assert.ok(first !== undefined)
    assert.ok(!files.names.has(hexOf(first)), 'GC did not collect the oldest unread blob: no pressure was made')
    assert.ok(existsSync(join(d.dataDir, 'blobs', 'sha256', hexOf(slow))))
    assert.ok(received < slowData.length, 'the client read the whole blob before GC ran: the test proves nothing')

    assert.ok(resumeReading !== undefined)
    resumeReading()
    const r = await done
    assert.equal(r.error, undefined)
    assert.equal(r.status, 200)
    assert.equal(r.source, 'cache')
    assert.equal(received, slowData.length)
    assert.equal(`sha256:${hash.digest('hex')}`, slow)

    // The pin is released: a collection may now take it, and leaves the cache under quota.
    const again = await cli(['gc', '--admin', d.admin])
    assert.equal(again.code, 0, again.stderr)
    assert.ok((await cacheFiles(d)).total <= quota)
  })

  test('`shoal preheat --peers all` fills this cache and the peer’s', async () => {
    const repo = 'team/app'
    const configData = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers' } }))
    const config = origin.addBlob(repo, configData)
    const l1 = randomBytes(5 * MiB)
    const l2 = randomBytes(3 * MiB)
    const layer1 = origin.addBlob(repo, l1)
    const layer2 = origin.addBlob(repo, l2)
    origin.addManifest(
      repo,
      {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, digest: config, size: configData.length },
        layers: [
          { mediaType: OCI_LAYER, digest: layer1, size: l1.length },
          { mediaType: OCI_LAYER, digest: layer2, size: l2.length },
        ],
      },
      OCI_MANIFEST,
      ['1.0'],
    )
    const totalBytes = configData.length + l1.length + l2.length

    const b = await startDaemon({ upstream: origin.url, p2p: true })
    const a = await startDaemon({ upstream: origin.url, p2p: true, bootstrapPort: b.p2pPort })
    const statusOf = async (d: Daemon): Promise<{ peerId: string; peers: number }> => {
      const r = await http(d.adminUrl, '/status', { timeoutMs: 5_000 })
      assert.equal(r.status, 200)
      return JSON.parse(r.body.toString('utf8')) as { peerId: string; peers: number }
    }
    await waitFor('A to connect to B', async () => (await statusOf(a)).peers >= 1, 15_000, 100)
    const bId = (await statusOf(b)).peerId

    const out = await cli(['preheat', '--admin', a.admin, '--peers', 'all', `${repo}:1.0`])
    assert.equal(out.code, 0, `${out.stderr}\nA: ${a.stderr()}`)
    assert.match(out.stdout, new RegExp(`preheated ${repo}:1\\.0: 1 manifests, 3 blobs, ${totalBytes} bytes`))
    assert.match(out.stdout, new RegExp(`^peer ${bId}: accepted$`, 'm'))

    const wanted = [config, layer1, layer2].map(hexOf)
    const aFiles = await cacheFiles(a)
    for (const h of wanted) assert.ok(aFiles.names.has(h), `A's cache lacks ${h}`)
    await waitFor(
      "every blob in B's cache",
      async () => {
        const { names } = await cacheFiles(b)
        return wanted.every((h) => names.has(h))
      },
      20_000,
      100,
    )
    await waitFor(
      "B's metrics to show the preheated bytes",
      async () => {
        const m = await blobBytes(b)
        return m.origin + m.peer >= totalBytes
      },
      5_000,
      50,
    )
    const mb = await blobBytes(b)
    assert.equal(mb.cache, 0)
    assert.equal(mb.origin + mb.peer, totalBytes)

    const pulled = await pullBlob(b, repo, layer1)
    assert.equal(pulled.source, 'cache')
    assert.equal(pulled.size, l1.length)
  })

  test('`shoal keygen` writes a 0600 pnet key once, and prints one without -o', async () => {
    const root = await newRoot()
    const file = join(root, 'swarm.key')
    const r = await cli(['keygen', '-o', file])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, '')
    const key = await readFile(file, 'utf8')
    const lines = key.split('\n')
    assert.equal(lines.length, 4, `expected 3 lines and a final newline: ${JSON.stringify(key)}`)
    assert.equal(lines[0], '/key/swarm/psk/1.0.0/')
    assert.equal(lines[1], '/base16/')
    assert.match(lines[2] ?? '', /^[0-9a-f]{64}$/)
    assert.equal(lines[3], '')
    assert.equal((await stat(file)).mode & 0o777, 0o600)

    const again = await cli(['keygen', '-o', file])
    assert.notEqual(again.code, 0, 'keygen overwrote an existing key file')
    assert.match(again.stderr, /EEXIST|exists/i)
    assert.equal(await readFile(file, 'utf8'), key)
    assert.equal((await stat(file)).mode & 0o777, 0o600)

    const printed = await cli(['keygen'])
    assert.equal(printed.code, 0, printed.stderr)
    assert.match(printed.stdout, /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/)
    assert.notEqual(printed.stdout, key)
  })
})
