/**
 * `shoal pull REF --output DIR`: pulls an image through the local Shoal daemon's `/v2/` (or an
 * in-process daemon with `--standalone`) into an OCI image layout: `oci-layout`, `index.json`
 * (the tag as `org.opencontainers.image.ref.name`, the full name as `io.containerd.image.name`)
 * and `blobs/sha256/<hex>`. skopeo reads it as `oci:DIR:TAG`; `tar -C DIR -c . | ctr images
 * import -` imports it into containerd.
 *
 * Requests carry `?ns=<registry>` like containerd's, so the daemon fetches from the registry the
 * reference names. Every blob is hashed while it streams to disk (never held in memory) and lands
 * under its digest only when the sha256 and the size match; `index.json` is written last, so an
 * interrupted pull never leaves a layout that names a missing blob.
 */
import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Command } from 'commander'
import { Agent, type Dispatcher, request } from 'undici'
import { envConfig, type RawConfig, readConfigFile, resolveConfig } from '../config/config.js'
import { DEFAULT_LISTEN, MAX_MANIFEST_BYTES } from '../constants.js'
import { isShoalError, ShoalError } from '../errors.js'
import { hostPlatform, matchPlatform, type ParsedManifest, parseManifest } from '../oci/manifest.js'
import {
  DOCKER_LIST,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_V1_SIGNED,
  MANIFEST_ACCEPT,
  OCI_INDEX,
  OCI_MANIFEST,
  sniffManifestType,
} from '../oci/media-types.js'
import { type ImageReference, parseImageReference } from '../oci/reference.js'
import { basicAuth, parseChallenge } from '../origin/auth.js'

const REF_NAME = 'org.opencontainers.image.ref.name'
const CONTAINERD_NAME = 'io.containerd.image.name'
/** Blobs downloaded at once. */
const PULL_CONCURRENCY = 3
/** Attempts per blob on a broken connection or stream (HTTP errors are not retried). */
const BLOB_ATTEMPTS = 3
/** The daemon answers headers once the origin did (it retries the origin itself): generous. */
const HEADERS_TIMEOUT_MS = 5 * 60_000
/** A body that sends nothing for this long is abandoned (and retried). */
const BODY_TIMEOUT_MS = 2 * 60_000
const PLATFORM = /^[a-z0-9]+\/[a-z0-9_]+(?:\/[a-z0-9]+)?$/
/** Keys a standalone pull never takes from the environment or a config file. */
const STANDALONE_IGNORED = ['listen', 'adminListen', 'p2pListen', 'bootstrap', 'mdns']

export interface PullOptions {
  output: string
  platform?: string
  allPlatforms?: boolean
  mirror?: string
  standalone?: boolean
  dataDir?: string
  defaultUpstream?: string
  config?: string
  creds?: string
  progress?: string
  logLevel?: string
}

export function registerPull(program: Command): void {
  program
    .command('pull')
    .description('pull an image through the local Shoal daemon into an OCI image layout directory')
    .argument('<ref>', 'image reference, e.g. alpine:3 or registry.example.com/team/app:1.2[@sha256:…]')
    .requiredOption('-o, --output <dir>', 'OCI image layout directory to write (created, or added to)')
    .option('--platform <os/arch[/variant]>', `platform to pick from a multi-arch image (default ${hostPlatform()})`)
    .option('--all-platforms', 'keep the whole multi-arch index and every platform')
    .option('--mirror <url>', `the Shoal daemon (default: SHOAL_LISTEN, --config's listen, or ${DEFAULT_LISTEN})`)
    .option('--standalone', 'run an in-process daemon for this pull instead of using a running one')
    .option('--data-dir <dir>', "standalone: the daemon's data dir (default: SHOAL_DATA_DIR or ./.shoal)")
    .option('--default-upstream <url>', 'standalone: registry for names without one')
    .option('-c, --config <file>', "daemon config file (standalone: the daemon's settings; otherwise its listen)")
    .option('--creds <user:password>', 'registry credentials, sent to the daemon as Basic authorization')
    .option('--progress <mode>', 'auto (bars on a terminal, lines otherwise), bars, plain or none', 'auto')
    .option('--log-level <level>', 'standalone: daemon log level, on stderr', 'warn')
    .addHelpText(
      'after',
      `
Examples:
  $ shoal pull alpine:3 -o /tmp/alpine && skopeo inspect oci:/tmp/alpine:3
  $ shoal pull --mirror http://127.0.0.1:5312 --all-platforms 127.0.0.1:5311/team/app:1.2 -o ./app
  $ shoal pull --standalone --data-dir /tmp/s --default-upstream http://127.0.0.1:5311 \\
      127.0.0.1:5311/team/app:1.2 -o ./app --platform linux/arm64
  $ tar -C ./app -c . | ctr images import -`,
    )
    .action(async (ref: string, opts: PullOptions) => {
      await pull(ref, opts)
    })
}

// ---------------------------------------------------------------------------------------------
// Options

/** `http://HOST:PORT` of a daemon from `HOST:PORT` or a URL; a wildcard listen means loopback. */
export function mirrorUrl(addr: string): URL {
  const withScheme = addr.includes('://') ? addr : `http://${addr}`
  let url: URL
  try {
    url = new URL(withScheme)
  } catch {
    throw new ShoalError('CONFIG_INVALID', `--mirror: not a URL or HOST:PORT: "${addr}"`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ShoalError('CONFIG_INVALID', `--mirror: expected http:// or https://, got "${addr}"`)
  }
  if (url.hostname === '0.0.0.0') url.hostname = '127.0.0.1'
  if (url.hostname === '[::]') url.hostname = '[::1]'
  url.pathname = '/'
  url.search = ''
  url.hash = ''
  return url
}

/** The running daemon's address: --mirror, SHOAL_LISTEN, the config file's listen, the default. */
export function defaultMirror(opts: { mirror?: string; config?: string }): URL {
  if (opts.mirror !== undefined) return mirrorUrl(opts.mirror)
  const env = process.env.SHOAL_LISTEN
  if (env !== undefined && env !== '') return mirrorUrl(env)
  if (opts.config !== undefined) {
    const listen = readConfigFile(opts.config).listen
    if (typeof listen === 'string') return mirrorUrl(listen)
  }
  return mirrorUrl(DEFAULT_LISTEN)
}

function parseCreds(creds: string | undefined): { username: string; password: string } | undefined {
  if (creds === undefined) return undefined
  const colon = creds.indexOf(':')
  if (colon <= 0) throw new ShoalError('CONFIG_INVALID', '--creds: expected USER:PASSWORD')
  return { username: creds.slice(0, colon), password: creds.slice(colon + 1) }
}

function checkOptions(opts: PullOptions): void {
  if (opts.platform !== undefined && !PLATFORM.test(opts.platform)) {
    throw new ShoalError('CONFIG_INVALID', `--platform: expected os/arch[/variant], got "${opts.platform}"`)
  }
  if (opts.platform !== undefined && opts.allPlatforms === true) {
    throw new ShoalError('CONFIG_INVALID', '--platform and --all-platforms exclude each other')
  }
  if (opts.standalone === true && opts.mirror !== undefined) {
    throw new ShoalError('CONFIG_INVALID', '--mirror and --standalone exclude each other')
  }
  if (opts.standalone !== true && (opts.dataDir !== undefined || opts.defaultUpstream !== undefined)) {
    throw new ShoalError('CONFIG_INVALID', '--data-dir and --default-upstream need --standalone')
  }
  if (!['auto', 'bars', 'plain', 'none'].includes(opts.progress ?? 'auto')) {
    throw new ShoalError('CONFIG_INVALID', `--progress: expected auto, bars, plain or none, got "${opts.progress}"`)
  }
}

// ---------------------------------------------------------------------------------------------
// The pull

export interface PullResult {
  /** Digest of what index.json names: the platform's manifest, or the index (--all-platforms). */
  digest: string
  mediaType: string
  blobs: number
  bytes: number
}

export async function pull(refText: string, opts: PullOptions): Promise<PullResult> {
  checkOptions(opts)
  const ref = parseImageReference(refText)
  const creds = parseCreds(opts.creds)
  const out = resolve(opts.output)
  const mode =
    opts.progress === undefined || opts.progress === 'auto' ? (process.stdout.isTTY ? 'bars' : 'plain') : opts.progress
  const reporter: Reporter =
    mode === 'bars'
      ? new BarReporter(process.stdout)
      : mode === 'plain'
        ? new LineReporter(process.stdout)
        : new NoReporter()
  const aborter = new AbortController()
  const onSignal = (): void => aborter.abort(new ShoalError('ABORTED', 'interrupted'))
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const dispatcher = new Agent({ connections: PULL_CONCURRENCY + 2, connectTimeout: 10_000 })
  let daemon: { stop(): Promise<void> } | undefined
  try {
    let base: URL
    if (opts.standalone === true) {
      const started = await startStandalone(opts)
      daemon = started.daemon
      base = started.url
    } else {
      base = defaultMirror(opts)
    }
    const client = new MirrorClient(base, ref, creds, dispatcher, aborter.signal)
    await prepareLayout(out)
    const puller = new Puller(client, ref, out, reporter, opts, aborter.signal)
    return await puller.run(opts.standalone === true ? `an in-process daemon (${base.host})` : base.origin)
  } catch (err) {
    reporter.close()
    if (aborter.signal.aborted) throw new ShoalError('ABORTED', 'pull interrupted; index.json was not changed')
    if (isShoalError(err)) throw err
    throw new ShoalError('UPSTREAM_ERROR', err instanceof Error ? err.message : String(err), { cause: err })
  } finally {
    reporter.close()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await removePartials(out).catch(() => {})
    await dispatcher.close().catch(() => {})
    await daemon?.stop().catch(() => {})
  }
}

async function startStandalone(opts: PullOptions): Promise<{ daemon: { stop(): Promise<void> }; url: URL }> {
  const [{ createDaemon }, { createLogger }] = await Promise.all([import('../daemon.js'), import('../log.js')])
  const strip = (raw: RawConfig): RawConfig => {
    const copy = { ...raw }
    for (const k of STANDALONE_IGNORED) delete copy[k]
    return copy
  }
  const file = opts.config === undefined ? {} : strip(readConfigFile(opts.config))
  const config = resolveConfig({
    flags: {
      listen: '127.0.0.1:0',
      dataDir: opts.dataDir,
      defaultUpstream: opts.defaultUpstream,
      logLevel: opts.logLevel,
    },
    env: strip(envConfig(process.env)),
    file,
  })
  const daemon = createDaemon(config, { logger: createLogger(config.logLevel, process.stderr) })
  await daemon.start()
  return { daemon, url: new URL(`${daemon.url()}/`) }
}

/** The output dir: created, or an existing OCI layout (or an empty dir). */
async function prepareLayout(out: string): Promise<void> {
  const entries = await readdir(out).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined
    throw new ShoalError('CONFIG_INVALID', `--output: cannot read ${out}: ${err.message}`)
  })
  if (entries !== undefined && entries.length > 0 && !entries.includes('oci-layout')) {
    throw new ShoalError(
      'CONFIG_INVALID',
      `--output: ${out} exists and is not an OCI image layout (no oci-layout file)`,
    )
  }
  await mkdir(join(out, 'blobs', 'sha256'), { recursive: true })
  if (!entries?.includes('oci-layout')) {
    await writeFileAtomic(join(out, 'oci-layout'), `${JSON.stringify({ imageLayoutVersion: '1.0.0' })}\n`)
  }
}

async function removePartials(out: string): Promise<void> {
  const dir = join(out, 'blobs', 'sha256')
  for (const name of await readdir(dir)) {
    if (name.endsWith('.shoal-partial')) await rm(join(dir, name), { force: true })
  }
}

interface Fetched {
  body: Buffer
  digest: string
  mediaType: string
  source: string
}

class Puller {
  private readonly blobsDir: string

  constructor(
    private readonly client: MirrorClient,
    private readonly ref: ImageReference,
    private readonly out: string,
    private readonly reporter: Reporter,
    private readonly opts: PullOptions,
    private readonly signal: AbortSignal,
  ) {
    this.blobsDir = join(out, 'blobs', 'sha256')
  }

  async run(via: string): Promise<PullResult> {
    const started = Date.now()
    const ref = this.ref
    const wanted = this.opts.allPlatforms === true ? 'all platforms' : (this.opts.platform ?? hostPlatform())
    this.reporter.line(`pulling ${displayRef(ref)} (${wanted}) through ${via}`)
    const top = await this.manifest(ref.digest ?? ref.tag ?? 'latest')
    const parsed = parseManifest(top.body, top.mediaType)
    let chosen: { fetched: Fetched; platform?: Record<string, string> }
    const images: ParsedManifest[] = []
    /** Manifests the layout keeps: what index.json names, and what that references. */
    const manifests: Fetched[] = []
    if (parsed.kind === 'image') {
      this.reporter.line(`manifest ${top.digest} (image, ${top.source})`)
      chosen = { fetched: top }
      manifests.push(top)
      images.push(parsed)
    } else if (this.opts.allPlatforms === true) {
      this.reporter.line(`manifest ${top.digest} (index of ${parsed.manifests.length}, ${top.source})`)
      chosen = { fetched: top }
      manifests.push(top)
      await this.walkIndex(parsed, manifests, images, 1)
    } else {
      const platform = this.opts.platform ?? hostPlatform()
      const d = parsed.manifests.find(matchPlatform(platform))
      if (d === undefined) {
        const have = parsed.manifests.map((m) => platformText(m.platform)).join(', ')
        throw new ShoalError('MANIFEST_UNKNOWN', `${displayRef(ref)} has no ${platform} image (it has: ${have})`)
      }
      this.reporter.line(
        `manifest ${top.digest} (index of ${parsed.manifests.length}, ${top.source}): picked ${platformText(d.platform)}`,
      )
      const child = await this.manifest(d.digest, d.size)
      const childParsed = parseManifest(child.body, child.mediaType)
      if (childParsed.kind !== 'image') throw new ShoalError('MANIFEST_INVALID', `${d.digest} is not an image manifest`)
      this.reporter.line(`manifest ${child.digest} (image ${platformText(d.platform)}, ${child.source})`)
      chosen = { fetched: child, ...(d.platform === undefined ? {} : { platform: { ...d.platform } }) }
      manifests.push(child)
      images.push(childParsed)
    }
    // Every config and layer once, configs first (tiny, and they describe the image).
    const blobs = new Map<string, { digest: string; size: number; kind: 'config' | 'layer' }>()
    for (const img of images) {
      if (img.kind !== 'image') continue
      blobs.set(img.config.digest, { digest: img.config.digest, size: img.config.size, kind: 'config' })
    }
    for (const img of images) {
      if (img.kind !== 'image') continue
      for (const l of img.layers) {
        if (!blobs.has(l.digest)) blobs.set(l.digest, { digest: l.digest, size: l.size, kind: 'layer' })
      }
    }
    const list = [...blobs.values()]
    const total = list.reduce((n, b) => n + Math.max(0, b.size), 0)
    this.reporter.begin(list.length, total)
    const results = await pool(list, PULL_CONCURRENCY, (b) => this.blob(b))
    // Manifests go in as blobs (verified in memory: bounded by MAX_MANIFEST_BYTES).
    for (const m of manifests) await this.writeSmallBlob(m.digest, m.body)
    await this.writeIndex(chosen.fetched, chosen.platform)
    const bytes = results.reduce((n, r) => n + r.bytes, 0)
    const sources = new Map<string, number>()
    for (const r of results) sources.set(r.source, (sources.get(r.source) ?? 0) + 1)
    const secs = (Date.now() - started) / 1000
    const tag = ref.tag === undefined ? '' : ` (oci:${this.out}:${ref.tag})`
    this.reporter.done(
      `pulled ${displayRef(ref)} into ${this.out}${tag}: ${chosen.fetched.digest}, ${list.length} blobs, ` +
        `${formatBytes(bytes)} in ${secs.toFixed(1)} s (${formatRate(bytes, secs)}); ` +
        [...sources].map(([s, n]) => `${s} ${n}`).join(', '),
    )
    return { digest: chosen.fetched.digest, mediaType: chosen.fetched.mediaType, blobs: list.length, bytes }
  }

  /** --all-platforms: every manifest of the index (and of nested indexes, one level). */
  private async walkIndex(
    index: ParsedManifest & { kind: 'index' },
    manifests: Fetched[],
    images: ParsedManifest[],
    depth: number,
  ): Promise<void> {
    for (const d of index.manifests) {
      const child = await this.manifest(d.digest, d.size)
      const parsed = parseManifest(child.body, child.mediaType)
      manifests.push(child)
      if (parsed.kind === 'index') {
        if (depth >= 2) throw new ShoalError('MANIFEST_INVALID', `indexes nested too deep at ${d.digest}`)
        this.reporter.line(`manifest ${child.digest} (nested index, ${child.source})`)
        await this.walkIndex(parsed, manifests, images, depth + 1)
      } else {
        this.reporter.line(`manifest ${child.digest} (image ${platformText(d.platform)}, ${child.source})`)
        images.push(parsed)
      }
    }
  }

  /** A manifest by tag or digest, verified against its digest (and the daemon's header). */
  private async manifest(reference: string, expectedSize?: number): Promise<Fetched> {
    const what = `manifest ${reference} of ${displayRef(this.ref)}`
    const res = await this.client.get(`/v2/${this.ref.name}/manifests/${reference}`, { accept: MANIFEST_ACCEPT }, what)
    const chunks: Buffer[] = []
    let n = 0
    for await (const chunk of res.body) {
      const b = chunk as Buffer
      n += b.length
      if (n > MAX_MANIFEST_BYTES) {
        res.body.destroy()
        throw new ShoalError('MANIFEST_INVALID', `${what} is larger than ${MAX_MANIFEST_BYTES} bytes`)
      }
      chunks.push(b)
    }
    const body = Buffer.concat(chunks)
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`
    const header = headerValue(res.headers['docker-content-digest'])
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw new ShoalError('DIGEST_INVALID', `${what}: content has digest ${digest}`)
    }
    if (header?.startsWith('sha256:') === true && header !== digest) {
      throw new ShoalError('DIGEST_INVALID', `${what}: the daemon says ${header}, the content has ${digest}`)
    }
    if (expectedSize !== undefined && expectedSize >= 0 && expectedSize !== body.length) {
      throw new ShoalError('SIZE_INVALID', `${what}: ${body.length} bytes, the index says ${expectedSize}`)
    }
    const type = headerValue(res.headers['content-type'])?.split(';')[0]?.trim()
    let mediaType = type !== undefined && MANIFEST_KINDS.has(type) ? type : (sniffManifestType(body) ?? '')
    if (mediaType === DOCKER_MANIFEST_V1_SIGNED || (mediaType === '' && /"schemaVersion"\s*:\s*1/.test(String(body)))) {
      throw new ShoalError('UNSUPPORTED', `${what} is a Docker schema 1 manifest, which OCI layouts cannot hold`)
    }
    if (!MANIFEST_KINDS.has(mediaType)) mediaType = OCI_MANIFEST
    return { body, digest, mediaType, source: headerValue(res.headers['x-shoal-source']) ?? 'unknown' }
  }

  /** One config or layer, streamed to a partial file while hashed; renamed when it verifies. */
  private async blob(b: { digest: string; size: number; kind: 'config' | 'layer' }): Promise<BlobResult> {
    const hex = b.digest.slice('sha256:'.length)
    const final = join(this.blobsDir, hex)
    const item: Item = { kind: b.kind, digest: b.digest, size: b.size, source: 'local', peers: undefined, bytes: 0 }
    if (await this.alreadyHave(final, b)) {
      this.reporter.skip(item)
      return { source: 'local', bytes: 0 }
    }
    const partial = `${final}.shoal-partial`
    const what = `${b.kind} ${b.digest} of ${displayRef(this.ref)}`
    const started = Date.now()
    for (let attempt = 1; ; attempt++) {
      const res = await this.client.get(`/v2/${this.ref.name}/blobs/${b.digest}`, {}, what)
      const length = Number(headerValue(res.headers['content-length']) ?? Number.NaN)
      if (b.size >= 0 && Number.isFinite(length) && length !== b.size) {
        res.body.destroy()
        throw new ShoalError('SIZE_INVALID', `${what}: the daemon sends ${length} bytes, the manifest says ${b.size}`)
      }
      item.source = headerValue(res.headers['x-shoal-source']) ?? 'unknown'
      item.peers = headerValue(res.headers['x-shoal-peers'])
      item.bytes = 0
      const hash = createHash('sha256')
      this.reporter.start(item, attempt)
      const meter = new Transform({
        transform: (chunk: Buffer, _enc, cb) => {
          if (b.size >= 0 && item.bytes + chunk.length > b.size) {
            cb(new ShoalError('SIZE_INVALID', `${what}: more than the ${b.size} bytes the manifest says`))
            return
          }
          item.bytes += chunk.length
          hash.update(chunk)
          this.reporter.progress(item, chunk.length)
          cb(null, chunk)
        },
      })
      try {
        // flush: fsync before close; pipeline resolves once the file is closed.
        await pipeline(res.body, meter, createWriteStream(partial, { flush: true }), { signal: this.signal })
      } catch (err) {
        this.reporter.unprogress(item)
        await rm(partial, { force: true })
        if (this.signal.aborted || isShoalError(err) || attempt >= BLOB_ATTEMPTS) {
          if (isShoalError(err)) throw err
          throw new ShoalError('UPSTREAM_ERROR', `${what}: download failed: ${errText(err)}`, { cause: err })
        }
        this.reporter.line(`retry  ${b.kind} ${short(b.digest)}: ${errText(err)}`)
        await sleep(250 * attempt, undefined, { signal: this.signal })
        continue
      }
      const got = `sha256:${hash.digest('hex')}`
      if (got !== b.digest || (b.size >= 0 && item.bytes !== b.size)) {
        await rm(partial, { force: true })
        throw new ShoalError(
          'DIGEST_INVALID',
          `${what}: got ${item.bytes} bytes with digest ${got}; expected ${b.size} bytes with ${b.digest}`,
        )
      }
      await rename(partial, final)
      this.reporter.finish(item, Date.now() - started)
      return { source: item.source, bytes: item.bytes }
    }
  }

  /** A blob already in the layout counts only if its content still matches its name. */
  private async alreadyHave(path: string, b: { digest: string; size: number }): Promise<boolean> {
    const st = await stat(path).catch(() => undefined)
    if (st === undefined || (b.size >= 0 && st.size !== b.size)) return false
    const hash = createHash('sha256')
    await pipeline(createReadStream(path), hash, { signal: this.signal })
    return `sha256:${hash.digest('hex')}` === b.digest
  }

  private async writeSmallBlob(digest: string, body: Buffer): Promise<void> {
    const path = join(this.blobsDir, digest.slice('sha256:'.length))
    const existing = await readFile(path).catch(() => undefined)
    if (existing?.equals(body)) return
    await writeFileAtomic(path, body)
  }

  /** index.json: this reference's entry replaces an earlier one with the same tag (or digest). */
  private async writeIndex(top: Fetched, platform: Record<string, string> | undefined): Promise<void> {
    const ref = this.ref
    const annotations: Record<string, string> = {
      [CONTAINERD_NAME]: `${ref.registry}/${ref.name}${ref.tag === undefined ? '' : `:${ref.tag}`}${ref.digest === undefined ? '' : `@${ref.digest}`}`,
    }
    if (ref.tag !== undefined) annotations[REF_NAME] = ref.tag
    const entry: Record<string, unknown> = { mediaType: top.mediaType, digest: top.digest, size: top.body.length }
    if (platform !== undefined) entry.platform = platform
    entry.annotations = annotations
    const path = join(this.out, 'index.json')
    let index: { schemaVersion: number; mediaType?: string; manifests: Record<string, unknown>[] } = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [],
    }
    const text = await readFile(path, 'utf8').catch(() => undefined)
    if (text !== undefined) {
      try {
        index = JSON.parse(text) as typeof index
        if (!Array.isArray(index.manifests)) throw new Error('no manifests')
      } catch (err) {
        throw new ShoalError('CONFIG_INVALID', `--output: ${path} is not an OCI index: ${errText(err)}`)
      }
    }
    index.manifests = index.manifests.filter((m) => {
      const a = (m.annotations ?? {}) as Record<string, string>
      if (ref.tag !== undefined) return a[REF_NAME] !== ref.tag
      return !(a[REF_NAME] === undefined && m.digest === top.digest)
    })
    index.manifests.push(entry)
    await writeFileAtomic(path, `${JSON.stringify(index, null, 2)}\n`)
  }
}

const MANIFEST_KINDS = new Set([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])

interface BlobResult {
  source: string
  bytes: number
}

async function writeFileAtomic(path: string, data: string | Buffer): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  const tmp = `${path}.shoal-partial`
  await writeFile(tmp, data, { flush: true })
  await rename(tmp, path)
}

/** Runs `fn` over `items`, `n` at a time; the first failure stops new work and is thrown. */
async function pool<T, R>(items: T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length)
  let next = 0
  let failed = false
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++
      try {
        results[i] = await fn(items[i] as T)
      } catch (err) {
        failed = true
        throw err
      }
    }
  }
  const workers = Array.from({ length: Math.min(n, items.length) }, worker)
  const settled = await Promise.allSettled(workers)
  const rejected = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected')
  if (rejected !== undefined) throw rejected.reason
  return results
}

// ---------------------------------------------------------------------------------------------
// HTTP to the daemon

class MirrorClient {
  private authorization: string | undefined
  private bearerTried = false

  constructor(
    readonly base: URL,
    private readonly ref: ImageReference,
    private readonly creds: { username: string; password: string } | undefined,
    private readonly dispatcher: Dispatcher,
    private readonly signal: AbortSignal,
  ) {
    if (creds !== undefined) this.authorization = basicAuth(creds.username, creds.password)
  }

  async get(path: string, headers: Record<string, string>, what: string): Promise<Dispatcher.ResponseData> {
    const url = new URL(path, this.base)
    url.searchParams.set('ns', this.ref.registry)
    for (;;) {
      let res: Dispatcher.ResponseData
      try {
        res = await request(url, {
          method: 'GET',
          dispatcher: this.dispatcher,
          signal: this.signal,
          headersTimeout: HEADERS_TIMEOUT_MS,
          bodyTimeout: BODY_TIMEOUT_MS,
          headers: { ...headers, ...(this.authorization === undefined ? {} : { authorization: this.authorization }) },
        })
      } catch (err) {
        if (this.signal.aborted) throw err
        throw new ShoalError(
          'UPSTREAM_UNREACHABLE',
          `cannot reach the Shoal daemon at ${this.base.origin} (${errText(err)}): start it with \`shoal daemon\`, ` +
            'point --mirror at it, or pull with --standalone',
          { cause: err },
        )
      }
      if (res.statusCode === 401 && this.creds !== undefined && !this.bearerTried) {
        // A token-auth origin: get a token from its realm with the credentials, once.
        const challenge = parseChallenge(headerValue(res.headers['www-authenticate']))
        await res.body.dump().catch(() => {})
        if (challenge?.scheme === 'bearer' && challenge.params.realm !== undefined) {
          this.bearerTried = true
          this.authorization = `Bearer ${await this.token(challenge.params)}`
          continue
        }
        throw this.authError(what)
      }
      if (res.statusCode >= 400) throw await this.httpError(res, what)
      return res
    }
  }

  private async token(params: Record<string, string>): Promise<string> {
    const realm = new URL(params.realm ?? '')
    if (params.service !== undefined) realm.searchParams.set('service', params.service)
    realm.searchParams.set('scope', params.scope ?? `repository:${this.ref.name}:pull`)
    const creds = this.creds
    let res: Dispatcher.ResponseData
    try {
      res = await request(realm, {
        method: 'GET',
        dispatcher: this.dispatcher,
        signal: this.signal,
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
        headers: creds === undefined ? {} : { authorization: basicAuth(creds.username, creds.password) },
      })
    } catch (err) {
      throw new ShoalError('UPSTREAM_UNREACHABLE', `cannot reach the token server ${realm.origin}: ${errText(err)}`)
    }
    const text = await res.body.text()
    if (res.statusCode === 401 || res.statusCode === 403) throw this.authError('a token')
    if (res.statusCode >= 400) {
      throw new ShoalError(
        'UPSTREAM_ERROR',
        `token server ${realm.origin}: HTTP ${res.statusCode} ${text.slice(0, 200)}`,
      )
    }
    const doc = JSON.parse(text) as { token?: string; access_token?: string }
    const token = doc.token ?? doc.access_token
    if (token === undefined) throw new ShoalError('UPSTREAM_ERROR', `token server ${realm.origin} sent no token`)
    return token
  }

  private authError(what: string): ShoalError {
    const reg = this.ref.registry
    return this.creds === undefined
      ? new ShoalError(
          'UNAUTHORIZED',
          `${reg} needs credentials for ${this.ref.name} (401 on ${what}): pass --creds USER:PASSWORD, or give ` +
            'the daemon its own (registries[].username/password in its config, or --docker-config)',
        )
      : new ShoalError('UNAUTHORIZED', `${reg} refused the credentials given with --creds for ${this.ref.name} (401)`)
  }

  private async httpError(res: Dispatcher.ResponseData, what: string): Promise<ShoalError> {
    const text = await res.body.text().catch(() => '')
    let detail = text.trim().slice(0, 300).trim()
    try {
      const doc = JSON.parse(text) as { errors?: { code?: string; message?: string }[] }
      if (Array.isArray(doc.errors)) {
        detail = doc.errors.map((e) => `${e.code ?? ''}: ${(e.message ?? '').trim()}`).join('; ')
      }
    } catch {
      // not JSON: the text itself
    }
    const suffix = detail === '' ? '' : ` (${detail})`
    const reg = this.ref.registry
    switch (res.statusCode) {
      case 401:
        return this.authError(what)
      case 403:
        return new ShoalError('DENIED', `${reg} denied access to ${this.ref.name}${suffix}`)
      case 404:
        return new ShoalError(
          what.startsWith('manifest') ? 'MANIFEST_UNKNOWN' : 'BLOB_UNKNOWN',
          `${what}: not found${suffix}`,
        )
      case 429:
        return new ShoalError('TOOMANYREQUESTS', `${reg} is rate limiting: ${what}${suffix}`)
      case 502:
      case 503:
      case 504:
        return new ShoalError('UPSTREAM_UNREACHABLE', `the daemon could not get ${what} from ${reg}${suffix}`)
      default:
        return new ShoalError('UPSTREAM_ERROR', `${what}: HTTP ${res.statusCode}${suffix}`)
    }
  }
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v
}

function errText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : ''
    return `${code === undefined ? '' : `${code} `}${err.message}${cause}`.trim()
  }
  return String(err)
}

// ---------------------------------------------------------------------------------------------
// Progress

interface Item {
  kind: 'config' | 'layer'
  digest: string
  size: number
  /** X-Shoal-Source: cache, origin or join ('local' when the layout already had it). */
  source: string
  /** Peers the daemon reports (X-Shoal-Peers), if it does. */
  peers: string | undefined
  bytes: number
}

interface Reporter {
  line(text: string): void
  begin(blobs: number, totalBytes: number): void
  start(item: Item, attempt: number): void
  progress(item: Item, bytes: number): void
  /** A failed attempt: its bytes no longer count. */
  unprogress(item: Item): void
  finish(item: Item, ms: number): void
  skip(item: Item): void
  done(summary: string): void
  close(): void
}

class NoReporter implements Reporter {
  line(): void {}
  begin(): void {}
  start(): void {}
  progress(): void {}
  unprogress(): void {}
  finish(): void {}
  skip(): void {}
  done(): void {}
  close(): void {}
}

/** Not a terminal: one line per blob start and finish, and a summary. */
class LineReporter implements Reporter {
  constructor(private readonly out: NodeJS.WritableStream) {}
  line(text: string): void {
    this.out.write(`${text}\n`)
  }
  begin(blobs: number, totalBytes: number): void {
    this.line(`blobs  ${blobs} to fetch, ${formatBytes(totalBytes)}`)
  }
  start(item: Item, attempt: number): void {
    const again = attempt > 1 ? ` (attempt ${attempt})` : ''
    this.line(
      `start  ${pad(item.kind)} ${short(item.digest)} ${formatBytes(item.size)} from ${sourceText(item)}${again}`,
    )
  }
  progress(): void {}
  unprogress(): void {}
  finish(item: Item, ms: number): void {
    this.line(
      `done   ${pad(item.kind)} ${short(item.digest)} ${formatBytes(item.bytes)} in ${(ms / 1000).toFixed(2)} s ` +
        `(${formatRate(item.bytes, ms / 1000)}, ${sourceText(item)})`,
    )
  }
  skip(item: Item): void {
    this.line(`exists ${pad(item.kind)} ${short(item.digest)} ${formatBytes(item.size)} (already in the layout)`)
  }
  done(summary: string): void {
    this.line(summary)
  }
  close(): void {}
}

/** A terminal: a bar per blob and an overall bar, redrawn in place at most 10 times a second. */
class BarReporter implements Reporter {
  private readonly rows: { item: Item; started: number; state: 'running' | 'done' | 'exists' }[] = []
  private drawn = 0
  private total = 0
  private blobs = 0
  private got = 0
  private finished = 0
  private started = Date.now()
  private timer: NodeJS.Timeout | undefined
  private closed = false

  constructor(private readonly out: NodeJS.WriteStream) {}

  line(text: string): void {
    this.clear()
    this.out.write(`${text}\n`)
    this.draw()
  }
  begin(blobs: number, totalBytes: number): void {
    this.blobs = blobs
    this.total = totalBytes
    this.started = Date.now()
    this.out.write('\x1b[?25l')
    this.timer = setInterval(() => this.redraw(), 100)
    this.timer.unref()
  }
  start(item: Item): void {
    if (!this.rows.some((r) => r.item === item)) this.rows.push({ item, started: Date.now(), state: 'running' })
  }
  progress(_item: Item, bytes: number): void {
    this.got += bytes
  }
  unprogress(item: Item): void {
    this.got -= item.bytes
  }
  finish(item: Item): void {
    const row = this.rows.find((r) => r.item === item)
    if (row !== undefined) row.state = 'done'
    this.finished++
    this.redraw()
  }
  skip(item: Item): void {
    this.rows.push({ item, started: Date.now(), state: 'exists' })
    this.got += Math.max(0, item.size)
    this.finished++
  }
  done(summary: string): void {
    this.redraw()
    this.stop()
    this.out.write(`${summary}\n`)
  }
  close(): void {
    this.stop()
  }

  private stop(): void {
    if (this.closed) return
    this.closed = true
    if (this.timer !== undefined) clearInterval(this.timer)
    this.out.write('\x1b[?25h')
  }

  private redraw(): void {
    if (this.closed) return
    this.clear()
    this.draw()
  }

  private clear(): void {
    if (this.drawn > 0) this.out.write(`\x1b[${this.drawn}A\x1b[0J`)
    this.drawn = 0
  }

  private draw(): void {
    if (this.closed || this.blobs === 0) return
    const width = Math.max(60, Math.min(this.out.columns ?? 80, 140))
    const maxRows = Math.max(3, (this.out.rows ?? 24) - 3)
    const lines: string[] = []
    const now = Date.now()
    for (const r of this.rows.slice(-maxRows)) {
      const { item } = r
      const secs = (now - r.started) / 1000
      const frac = item.size > 0 ? item.bytes / item.size : r.state === 'running' ? 0 : 1
      const status =
        r.state === 'exists'
          ? 'exists'
          : r.state === 'done'
            ? `done ${formatBytes(item.bytes)}`
            : `${formatBytes(item.bytes)}/${formatBytes(item.size)} ${formatRate(item.bytes, secs)}`
      lines.push(
        `${pad(item.kind)} ${short(item.digest)} ${bar(r.state === 'exists' ? 1 : frac, width - 70)} ${status} ${sourceText(item)}`,
      )
    }
    const secs = (now - this.started) / 1000
    const frac = this.total > 0 ? this.got / this.total : this.finished / Math.max(1, this.blobs)
    lines.push(
      `total  ${bar(frac, width - 58)} ${formatBytes(this.got)}/${formatBytes(this.total)} ` +
        `${formatRate(this.got, secs)} ${this.finished}/${this.blobs} blobs`,
    )
    this.out.write(`${lines.map((l) => `\x1b[2K${l.slice(0, width - 1)}`).join('\n')}\n`)
    this.drawn = lines.length
  }
}

function bar(frac: number, width: number): string {
  const w = Math.max(10, width)
  const f = Math.min(1, Math.max(0, frac))
  const full = Math.round(f * w)
  return `[${'#'.repeat(full)}${'-'.repeat(w - full)}] ${String(Math.floor(f * 100)).padStart(3)}%`
}

function sourceText(item: Item): string {
  return item.peers === undefined ? item.source : `${item.source}, ${item.peers} peers`
}

function pad(kind: string): string {
  return kind.padEnd(6)
}

function short(digest: string): string {
  return digest.slice(0, 'sha256:'.length + 12)
}

function platformText(p: { os?: string; architecture?: string; variant?: string } | undefined): string {
  if (p === undefined) return 'unknown platform'
  return [p.os, p.architecture, p.variant].filter((x) => x !== undefined && x !== '').join('/')
}

function displayRef(ref: ImageReference): string {
  return `${ref.registry}/${ref.name}${ref.tag === undefined ? '' : `:${ref.tag}`}${ref.digest === undefined ? '' : `@${ref.digest}`}`
}

export function formatBytes(n: number): string {
  if (n < 0) return '? B'
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = n / 1024
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${v.toFixed(1)} ${units[i]}`
}

function formatRate(bytes: number, secs: number): string {
  return secs <= 0 ? '- /s' : `${formatBytes(Math.round(bytes / secs))}/s`
}
