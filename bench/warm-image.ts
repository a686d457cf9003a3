/**
 * How long a small image takes through Shoal when a peer already holds it (the common pull of a
 * fleet: every node after the first), beside the same blobs read from the holder's own cache.
 *
 * docker-registry is the origin; daemon A pulls each round's image (four 2 MiB layers and a
 * 481-byte config, as a client asks for them: the layers at once, then the config) and holds it;
 * daemon B, bootstrapped to A, then pulls the same blobs. The baseline, in the same round, is the
 * same pull from A (a cache hit: the HTTP floor of a mirror that holds the image). Each round uses
 * new blobs, so B never holds them; B's /metrics must count every byte as from its peer and none
 * from the origin, and every body must match its digest.
 *
 *   npm run build && node dist/bench/warm-image.js [--rounds 8]
 *
 * Loopback only; every process is this script's and ends with it.
 */
import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { request } from 'undici'
import { type BlobFile, generateBlob, uploadBlob } from './lib/blob.js'
import { blobBytes, waitForPeer } from './lib/p2p.js'
import { median } from './lib/phases.js'
import { killAllSync, type Managed, stopAll, tailLog } from './lib/procs.js'
import { startRegistry, startShoal } from './lib/servers.js'

const LAYER = 2 * 1024 * 1024
const CONFIG = 481
const REPO = 'bench/warm'

interface Fetched {
  digest: string
  source: string | undefined
}

async function get(url: string): Promise<Fetched> {
  const r = await request(url, { signal: AbortSignal.timeout(60_000) })
  const hash = createHash('sha256')
  for await (const chunk of r.body) hash.update(chunk as Buffer)
  if (r.statusCode !== 200) throw new Error(`GET ${url}: status ${r.statusCode}`)
  const source = r.headers['x-shoal-source']
  return { digest: `sha256:${hash.digest('hex')}`, source: typeof source === 'string' ? source : undefined }
}

/** The layers at once, then the config, as skopeo and containerd ask; ms. */
async function pullImage(base: string, blobs: BlobFile[], wantSource?: string): Promise<number> {
  const url = (b: BlobFile): string => `${base}/v2/${REPO}/blobs/${b.digest}`
  const check = (b: BlobFile, f: Fetched): void => {
    if (f.digest !== b.digest) throw new Error(`${url(b)}: body ${f.digest}`)
    if (wantSource !== undefined && f.source !== wantSource) {
      throw new Error(`${url(b)}: X-Shoal-Source ${f.source ?? '(none)'}, not ${wantSource}`)
    }
  }
  const layers = blobs.slice(0, -1)
  const config = blobs.at(-1) as BlobFile
  const t0 = performance.now()
  const got = await Promise.all(layers.map((b) => get(url(b))))
  for (const [i, f] of got.entries()) check(layers[i] as BlobFile, f)
  check(config, await get(url(config)))
  return performance.now() - t0
}

async function main(rounds: number): Promise<void> {
  const workDir = await mkdtemp('/tmp/shoal-warm-')
  const procs: Managed[] = []
  try {
    const origin = await startRegistry({ name: 'origin', workDir, dataDir: join(workDir, 'origin-data') })
    procs.push(origin.proc)
    const images: BlobFile[][] = []
    for (let r = 0; r < rounds; r++) {
      const blobs: BlobFile[] = []
      for (const [i, size] of [LAYER, LAYER + 1, LAYER + 2, LAYER + 3, CONFIG].entries()) {
        const b = await generateBlob(join(workDir, `r${r}-${i}.blob`), size)
        await uploadBlob(origin.base, REPO, b)
        await rm(b.path)
        blobs.push(b)
      }
      images.push(blobs)
    }
    const a = await startShoal({
      name: 'warm-a',
      workDir,
      dataDir: join(workDir, 'a'),
      upstream: origin.base,
      logLevel: 'info',
      swarm: { bootstrap: [] },
      admin: true,
    })
    procs.push(a.proc)
    const b = await startShoal({
      name: 'warm-b',
      workDir,
      dataDir: join(workDir, 'b'),
      upstream: origin.base,
      logLevel: 'info',
      swarm: { bootstrap: [a.p2pAddr as string] },
      admin: true,
    })
    procs.push(b.proc)
    await waitForPeer(b, 15_000)

    const p2p: number[] = []
    const hit: number[] = []
    console.log('round   B (from its peer A) ms   A (cache hit) ms   B / A')
    for (const [r, blobs] of images.entries()) {
      await pullImage(a.base, blobs) // A fetches the image from the origin and holds it
      const h = await pullImage(a.base, blobs, 'cache')
      const before = await blobBytes(b.admin as string)
      const p = await pullImage(b.base, blobs)
      const size = blobs.reduce((n, x) => n + x.size, 0)
      // A blob's last bytes are counted as it is stored, a moment after its response ended.
      let after = await blobBytes(b.admin as string)
      for (let i = 0; i < 40 && after.peer - before.peer < size; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50))
        after = await blobBytes(b.admin as string)
      }
      if (after.origin !== before.origin || after.peer - before.peer !== size) {
        throw new Error(
          `round ${r + 1}: B got ${after.peer - before.peer} bytes from its peer and ${after.origin - before.origin} from the origin, of ${size} (${JSON.stringify({ before, after })})`,
        )
      }
      hit.push(h)
      p2p.push(p)
      console.log(
        `${String(r + 1).padStart(5)}   ${p.toFixed(0).padStart(22)}   ${h.toFixed(0).padStart(16)}   ${(p / h).toFixed(1).padStart(5)}`,
      )
    }
    const mp = median(p2p) ?? 0
    const mh = median(hit) ?? 0
    console.log(
      `median  ${mp.toFixed(0).padStart(22)}   ${mh.toFixed(0).padStart(16)}   ${(mp / mh).toFixed(1).padStart(5)}` +
        `   (image: 4 x 2 MiB layers at once, then a ${CONFIG}-byte config; ${rounds} rounds, each a new image)`,
    )
  } catch (err) {
    for (const p of procs) process.stderr.write(`--- ${p.name}\n${tailLog(p)}\n`)
    throw err
  } finally {
    await stopAll()
    await rm(workDir, { recursive: true, force: true })
  }
}

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '8' } } })
const rounds = Number(values.rounds)
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 100) {
  console.error('--rounds: an integer from 1 to 100')
  process.exit(2)
}
process.on('exit', killAllSync)
const watchdog = setTimeout(() => {
  console.error('warm-image: no result within 10 minutes')
  killAllSync()
  process.exit(3)
}, 600_000)
watchdog.unref()
await main(rounds)
