/**
 * Real components for the CLI tests: docker-registry as the origin, a synthetic OCI image pushed
 * with skopeo, the Shoal daemon and a private containerd as subprocesses, and the shoal CLI.
 * Every process is stopped by PID (and SIGKILLed at exit if a test dies first); every wait is
 * bounded; all traffic goes to 127.0.0.1.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream, existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'

/** dist/test/cli/harness.js → dist/src/cli/main.js */
export const SHOAL_MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))

const live = new Set<ChildProcess>()
process.on('exit', () => {
  for (const c of live) if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, 'SIGKILL')
})

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join('/tmp', prefix))
}

export async function removeDir(dir: string | undefined): Promise<void> {
  if (dir?.startsWith('/tmp/') === true) await rm(dir, { recursive: true, force: true, maxRetries: 3 })
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address()
      if (a === null || typeof a === 'string') return reject(new Error('no port'))
      srv.close(() => resolve(a.port))
    })
  })
}

export interface Proc {
  readonly pid: number
  readonly logFile: string
  /** SIGTERM by PID, SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>
  exited(): boolean
  log(): Promise<string>
}

export function startProcess(cmd: string, args: string[], logFile: string, env?: NodeJS.ProcessEnv): Proc {
  const out = createWriteStream(logFile)
  const child = spawn(cmd, args, { env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
  if (child.pid === undefined) throw new Error(`cannot start ${cmd}`)
  const pid = child.pid
  live.add(child)
  child.stdout?.pipe(out, { end: false })
  child.stderr?.pipe(out, { end: false })
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => {
      live.delete(child)
      resolve()
    })
  })
  return {
    pid,
    logFile,
    exited: () => child.exitCode !== null || child.signalCode !== null,
    log: () => readFile(logFile, 'utf8').catch(() => ''),
    async stop(graceMs = 10_000) {
      if (child.exitCode === null && child.signalCode === null) {
        process.kill(pid, 'SIGTERM')
        const killed = await Promise.race([exit.then(() => true), sleep(graceMs).then(() => false)])
        if (!killed) {
          process.kill(pid, 'SIGKILL')
          await Promise.race([exit, sleep(5_000)])
        }
      }
      out.end()
    },
  }
}

export interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a command to completion (SIGKILL after `timeoutMs`). */
export async function run(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; input?: Buffer } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] })
    live.add(child)
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => err.push(b))
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
    }, opts.timeoutMs ?? 30_000)
    child.once('error', (e) => {
      clearTimeout(timer)
      live.delete(child)
      reject(e)
    })
    child.once('close', (code) => {
      clearTimeout(timer)
      live.delete(child)
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() })
    })
    child.stdin.end(opts.input)
  })
}

export async function runOk(cmd: string, args: string[], opts: Parameters<typeof run>[2] = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} → exit ${r.code}\n${r.stdout}\n${r.stderr}`)
  return r
}

/** `node dist/src/cli/main.js ARGS` with the test's node; no SHOAL_* variable leaks in. */
export function shoal(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/tmp', ...opts.env }
  return run(process.execPath, [SHOAL_MAIN, ...args], { timeoutMs: opts.timeoutMs ?? 60_000, env })
}

async function httpStatus(url: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = request(url, { timeout: 1_000 }, (res) => {
      res.resume()
      resolve(res.statusCode)
    })
    req.on('error', () => resolve(undefined))
    req.on('timeout', () => req.destroy())
    req.end()
  })
}

export async function waitFor(
  what: string,
  ok: () => Promise<boolean>,
  proc?: Proc,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await ok()) return
    if (proc?.exited() === true) throw new Error(`${what}: the process exited\n${await proc.log()}`)
    await sleep(50)
  }
  throw new Error(`${what}: not ready within ${timeoutMs} ms${proc === undefined ? '' : `\n${await proc.log()}`}`)
}

/** Waits for a started process; when it never gets ready, stops it and removes its dir. */
async function ready(proc: Proc, dir: string, wait: () => Promise<void>): Promise<void> {
  try {
    await wait()
  } catch (err) {
    await proc.stop(2_000)
    await removeDir(dir)
    throw err
  }
}

// ---------------------------------------------------------------------------------------------

export interface Registry {
  proc: Proc
  port: number
  host: string
  url: string
  dir: string
}

/** docker-registry on 127.0.0.1 with its own config (Debian's default has htpasswd auth). */
export async function startRegistry(auth?: { username: string; password: string }): Promise<Registry> {
  const dir = await tempDir('shc-reg-')
  const port = await freePort()
  const lines = [
    'version: 0.1',
    'log:',
    '  level: warn',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'storage')}`,
    'http:',
    `  addr: 127.0.0.1:${port}`,
    '  secret: shoal-cli-test',
  ]
  if (auth !== undefined) {
    const r = await runOk('htpasswd', ['-Bbn', auth.username, auth.password])
    await writeFile(join(dir, 'htpasswd'), r.stdout)
    lines.push('auth:', '  htpasswd:', '    realm: shoal-cli-test', `    path: ${join(dir, 'htpasswd')}`)
  }
  await writeFile(join(dir, 'config.yml'), `${lines.join('\n')}\n`)
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir }
  const proc = startProcess('/usr/bin/docker-registry', ['serve', join(dir, 'config.yml')], join(dir, 'log'), env)
  const url = `http://127.0.0.1:${port}`
  await ready(proc, dir, () =>
    waitFor('docker-registry', async () => [200, 401].includes((await httpStatus(`${url}/v2/`)) ?? 0), proc),
  )
  return { proc, port, host: `127.0.0.1:${port}`, url, dir }
}

export interface ShoalDaemon {
  proc: Proc
  port: number
  url: string
  dir: string
  /** The daemon's `request` log lines. */
  requests(): Promise<{ method: string; url: string; status: number }[]>
}

export async function startShoal(defaultUpstream: string, configYaml?: string): Promise<ShoalDaemon> {
  const dir = await tempDir('shc-shoal-')
  const port = await freePort()
  const args = [
    SHOAL_MAIN,
    'daemon',
    '--listen',
    `127.0.0.1:${port}`,
    '--data-dir',
    join(dir, 'data'),
    '--default-upstream',
    defaultUpstream,
  ]
  if (configYaml !== undefined) {
    await writeFile(join(dir, 'config.yaml'), configYaml)
    args.push('--config', join(dir, 'config.yaml'))
  }
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir }
  const proc = startProcess(process.execPath, args, join(dir, 'log'), env)
  const url = `http://127.0.0.1:${port}`
  await ready(proc, dir, () => waitFor('shoal daemon', async () => (await httpStatus(`${url}/v2/`)) === 200, proc))
  return {
    proc,
    port,
    url,
    dir,
    async requests() {
      const out: { method: string; url: string; status: number }[] = []
      for (const line of (await proc.log()).split('\n')) {
        if (!line.startsWith('{')) continue
        try {
          const j = JSON.parse(line) as { msg?: string; method?: string; url?: string; status?: number }
          if (j.msg === 'request') out.push({ method: String(j.method), url: String(j.url), status: Number(j.status) })
        } catch {
          // a cut line
        }
      }
      return out
    },
  }
}

export interface Containerd {
  proc: Proc
  socket: string
  dir: string
  ctr(args: string[], timeoutMs?: number): Promise<RunResult>
}

/** A private containerd (root, state and sockets in a short temp dir; cri disabled). */
export async function startContainerd(): Promise<Containerd> {
  const dir = await tempDir('shc-ctd-')
  const socket = join(dir, 'c.sock')
  const config = [
    'version = 2',
    `root = "${join(dir, 'root')}"`,
    `state = "${join(dir, 'state')}"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = "${socket}"`,
    '[ttrpc]',
    `  address = "${join(dir, 't.sock')}"`,
    '[debug]',
    `  address = "${join(dir, 'd.sock')}"`,
    '',
  ].join('\n')
  await writeFile(join(dir, 'config.toml'), config)
  const proc = startProcess('/usr/bin/containerd', ['--config', join(dir, 'config.toml')], join(dir, 'log'))
  const ctr = (args: string[], timeoutMs = 30_000): Promise<RunResult> =>
    run('/usr/bin/ctr', ['--address', socket, '--namespace', 'shoaltest', ...args], { timeoutMs })
  await ready(proc, dir, () =>
    waitFor('containerd', async () => existsSync(socket) && (await ctr(['version'], 5_000)).code === 0, proc),
  )
  return { proc, socket, dir, ctr }
}

// ---------------------------------------------------------------------------------------------
// Synthetic images

export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

export function sha256(b: Buffer | string): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`
}

/** A tar with one regular file. */
function tarOne(name: string, content: Buffer): Buffer {
  const h = Buffer.alloc(512)
  h.write(name, 0, 100, 'utf8')
  h.write('0000644\0', 100)
  h.write('0000000\0', 108)
  h.write('0000000\0', 116)
  h.write(`${content.length.toString(8).padStart(11, '0')}\0`, 124)
  h.write(
    `${Math.floor(Date.now() / 1000)
      .toString(8)
      .padStart(11, '0')}\0`,
    136,
  )
  h.write('        ', 148)
  h.write('0', 156)
  h.write('ustar\0', 257)
  h.write('00', 263)
  let sum = 0
  for (const b of h) sum += b
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148)
  const pad = Buffer.alloc((512 - (content.length % 512)) % 512)
  return Buffer.concat([h, content, pad, Buffer.alloc(1024)])
}

export interface PlatformImage {
  platform: string
  manifest: { digest: string; size: number }
  config: { digest: string; size: number }
  layers: { digest: string; size: number }[]
}

export interface SyntheticImage {
  dir: string
  tag: string
  /** What the tag points at: the index (multi-arch) or the one manifest. */
  top: { digest: string; mediaType: string }
  platforms: PlatformImage[]
  /** Every blob digest: manifests, index, configs, layers. */
  allDigests: string[]
}

/**
 * An OCI layout with random-content gzip (level 1) layers: one image, or an index of one image
 * per platform when `platforms` has more than one entry (`os/arch[/variant]`).
 */
export async function buildImage(
  dir: string,
  tag: string,
  platforms: string[],
  layerSizes: number[],
): Promise<SyntheticImage> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true })
  const put = async (b: Buffer): Promise<{ digest: string; size: number }> => {
    const digest = sha256(b)
    await writeFile(join(dir, 'blobs', 'sha256', digest.slice(7)), b)
    return { digest, size: b.length }
  }
  const images: PlatformImage[] = []
  const all: string[] = []
  for (const platform of platforms) {
    const [os, architecture, variant] = platform.split('/') as [string, string, string | undefined]
    const layers: { digest: string; size: number }[] = []
    const diffIds: string[] = []
    for (const [i, size] of layerSizes.entries()) {
      const tar = tarOne(`file-${i}.bin`, randomBytes(size))
      diffIds.push(sha256(tar))
      layers.push(await put(gzipSync(tar, { level: 1 })))
    }
    const config = await put(
      Buffer.from(
        JSON.stringify({
          architecture,
          os,
          ...(variant === undefined ? {} : { variant }),
          config: { Env: ['PATH=/usr/bin'] },
          rootfs: { type: 'layers', diff_ids: diffIds },
        }),
      ),
    )
    const manifest = await put(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
          layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...l })),
        }),
      ),
    )
    images.push({ platform, manifest, config, layers })
    all.push(manifest.digest, config.digest, ...layers.map((l) => l.digest))
  }
  let top: { digest: string; mediaType: string; size: number }
  const first = images[0]
  if (first === undefined) throw new Error('no platform')
  if (images.length === 1) {
    top = { ...first.manifest, mediaType: OCI_MANIFEST }
  } else {
    const index = await put(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          manifests: images.map((img) => {
            const [os, architecture, variant] = img.platform.split('/')
            return {
              mediaType: OCI_MANIFEST,
              ...img.manifest,
              platform: { architecture, os, ...(variant === undefined ? {} : { variant }) },
            }
          }),
        }),
      ),
    )
    top = { ...index, mediaType: OCI_INDEX }
    all.push(index.digest)
  }
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: top.mediaType,
          digest: top.digest,
          size: top.size,
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  )
  return { dir, tag, top, platforms: images, allDigests: all }
}

/** skopeo copy --preserve-digests [--all] oci:DIR:TAG docker://HOST/REPO:TAG */
export async function pushImage(
  img: SyntheticImage,
  host: string,
  repo: string,
  creds?: { username: string; password: string },
): Promise<void> {
  const args = ['--insecure-policy', 'copy', '--dest-tls-verify=false', '--preserve-digests', '--quiet']
  if (img.platforms.length > 1) args.push('--all')
  if (creds !== undefined) args.push('--dest-creds', `${creds.username}:${creds.password}`)
  args.push(`oci:${img.dir}:${img.tag}`, `docker://${host}/${repo}:${img.tag}`)
  await runOk('skopeo', args, { timeoutMs: 60_000 })
}

/** sha256 of a file's content. */
export async function fileDigest(path: string): Promise<string> {
  return sha256(await readFile(path))
}

// ---------------------------------------------------------------------------------------------
// A TOML subset, enough to read what `shoal configure` writes back: comments, `[table]`
// (dotted, quoted keys), `[[array.table]]`, `key = "string" | true/false | number | ["a", "b"]`.

export type TomlValue = string | number | boolean | TomlValue[] | TomlTable
export interface TomlTable {
  [key: string]: TomlValue
}

function tomlKeys(text: string): string[] {
  const keys: string[] = []
  const re = /\s*(?:"((?:[^"\\]|\\.)*)"|([A-Za-z0-9_-]+))\s*(\.|$)/y
  let m = re.exec(text)
  while (m !== null) {
    keys.push(m[1] !== undefined ? (JSON.parse(`"${m[1]}"`) as string) : (m[2] ?? ''))
    if (m[3] === '') break
    m = re.exec(text)
  }
  if (re.lastIndex !== text.length && m === null) throw new Error(`toml: bad key "${text}"`)
  return keys
}

function tomlValue(text: string): TomlValue {
  const t = text.trim()
  if (t.startsWith('"')) return JSON.parse(t) as string
  if (t === 'true' || t === 'false') return t === 'true'
  if (/^-?\d+$/.test(t)) return Number(t)
  if (t.startsWith('[') && t.endsWith(']')) {
    const inner = t.slice(1, -1).trim()
    if (inner === '') return []
    return (JSON.parse(`[${inner.replace(/,\s*$/, '')}]`) as TomlValue[]).map((v) => v)
  }
  throw new Error(`toml: unsupported value ${t}`)
}

export function parseToml(text: string): TomlTable {
  const root: TomlTable = {}
  let current = root
  const descend = (keys: string[], arrayTable: boolean): TomlTable => {
    let t = root
    for (const [i, k] of keys.entries()) {
      const last = i === keys.length - 1
      let next = t[k]
      if (last && arrayTable) {
        const arr = (next ?? []) as TomlTable[]
        if (!Array.isArray(arr)) throw new Error(`toml: ${k} is not an array`)
        const fresh: TomlTable = {}
        arr.push(fresh)
        t[k] = arr
        return fresh
      }
      if (next === undefined) {
        next = {}
        t[k] = next
      }
      t = (Array.isArray(next) ? next[next.length - 1] : next) as TomlTable
    }
    return t
  }
  for (const raw of text.split('\n')) {
    const line = raw.replace(/^\s+/, '')
    if (line === '' || line.startsWith('#')) continue
    const arr = /^\[\[(.+)\]\]\s*(#.*)?$/.exec(line)
    const tbl = /^\[(.+)\]\s*(#.*)?$/.exec(line)
    if (arr?.[1] !== undefined) current = descend(tomlKeys(arr[1]), true)
    else if (tbl?.[1] !== undefined) current = descend(tomlKeys(tbl[1]), false)
    else {
      const eq = line.indexOf('=')
      if (eq === -1) throw new Error(`toml: bad line ${line}`)
      const keys = tomlKeys(line.slice(0, eq).trim())
      const value = line.slice(eq + 1).replace(/\s+#[^"]*$/, '')
      let t = current
      for (const k of keys.slice(0, -1)) {
        if (t[k] === undefined) t[k] = {}
        t = t[k] as TomlTable
      }
      t[keys[keys.length - 1] ?? ''] = tomlValue(value)
    }
  }
  return root
}
