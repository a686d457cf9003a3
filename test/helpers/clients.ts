/**
 * Real pull clients configured to use a mirror: skopeo (registries.conf mirror), containerd's
 * `ctr` against a private containerd (hosts.toml mirror), and podman (registries.conf through
 * CONTAINERS_REGISTRIES_CONF, storage in a temp root).
 *
 * Every client silently falls back to the image's own registry when the mirror fails, so the tests
 * give the image a registry name (`alias`) that is a dead loopback port: a pull that succeeds can
 * only have been served by the mirror.
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { access, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { POLICY_ACCEPT_ANYTHING } from './image.js'
import {
  type Proc,
  type RunOptions,
  type RunResult,
  removeTempDir,
  run,
  shortTempDir,
  startProcess,
  waitUntil,
} from './proc.js'
import type { Credentials } from './registry.js'

/** Where clients think the image lives (a dead port) and the mirror they are told to use. */
export interface MirrorRoute {
  /** `127.0.0.1:DEADPORT`: the image's registry as the client sees it; nothing listens there. */
  alias: string
  /** `127.0.0.1:PORT` of the mirror (Shoal). */
  mirror: string
}

// ---------------------------------------------------------------- blob checks

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256')
  await pipeline(createReadStream(path), h)
  return `sha256:${h.digest('hex')}`
}

export interface BlobCheck {
  /** digest → size of every blob file whose content matches its name. */
  ok: Map<string, number>
  /** Files whose content does not match their name. */
  bad: string[]
}

/**
 * Hashes every file in `dir` named by a sha256 hex (an OCI layout's blobs/sha256, containerd's
 * content store, skopeo's `dir:` layout) and checks that its content has that digest.
 */
export async function checkBlobFiles(
  dir: string,
  nameToHex: (name: string) => string | undefined = (n) => n,
): Promise<BlobCheck> {
  const ok = new Map<string, number>()
  const bad: string[] = []
  const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[]
    throw err
  })
  for (const name of names) {
    const hex = nameToHex(name)
    if (hex === undefined || !/^[0-9a-f]{64}$/.test(hex)) continue
    const path = join(dir, name)
    const got = await sha256File(path)
    if (got === `sha256:${hex}`) {
      ok.set(got, (await stat(path)).size)
    } else bad.push(`${name} has ${got}`)
  }
  return { ok, bad }
}

/** The blobs of an OCI image layout written by `skopeo copy … oci:DIR`. */
export function checkOciLayout(dir: string): Promise<BlobCheck> {
  return checkBlobFiles(join(dir, 'blobs', 'sha256'))
}

/** The blobs of a `dir:` layout (files named by hex; manifests are manifest.json / HEX.manifest.json). */
export function checkDirLayout(dir: string): Promise<BlobCheck> {
  return checkBlobFiles(dir)
}

// ---------------------------------------------------------------- skopeo

/** registries.conf: the alias registry (insecure) with one insecure mirror. */
export function registriesConf(route: MirrorRoute): string {
  return [
    'unqualified-search-registries = []',
    '',
    '[[registry]]',
    `prefix = "${route.alias}"`,
    `location = "${route.alias}"`,
    'insecure = true',
    '',
    '[[registry.mirror]]',
    `location = "${route.mirror}"`,
    'insecure = true',
    '',
  ].join('\n')
}

export interface SkopeoPullOptions {
  route: MirrorRoute
  repo: string
  /** A tag or a `sha256:` digest (default tag v1). */
  reference?: string
  /** Where the client's files go (registries.conf, policy, auth file, output); must exist. */
  workDir: string
  /** Output layout: oci:DIR (default) or dir:DIR. */
  dest?: 'oci' | 'dir'
  /** Output directory name inside workDir (default: out). */
  outName?: string
  /** --all (every platform of an index). */
  all?: boolean
  /** --override-arch (single-platform pull of another architecture). */
  arch?: string
  /**
   * The user's credentials, in the auth file for both the alias and the mirror (`skopeo login`
   * to each). containers/image sends the credentials of a mirror's own host to a mirror, never
   * `--src-creds` (those are for the image's registry only).
   */
  creds?: Credentials
  /** `--src-creds` (reaches the image's own registry only, not a mirror). */
  flagCreds?: Credentials
  timeoutMs?: number
}

/** A containers auth.json holding `creds` for each of `hosts`. */
export function authFile(hosts: readonly string[], creds: Credentials | undefined): string {
  const auths: Record<string, { auth: string }> = {}
  if (creds !== undefined) {
    const auth = Buffer.from(`${creds.username}:${creds.password}`).toString('base64')
    for (const h of hosts) auths[h] = { auth }
  }
  return JSON.stringify({ auths })
}

export interface SkopeoPull {
  result: RunResult
  /** The output layout directory. */
  out: string
}

/** `skopeo --registries-conf F copy --src-tls-verify=false docker://ALIAS/REPO:REF oci:OUT`. Never throws on failure. */
export async function skopeoPull(opts: SkopeoPullOptions): Promise<SkopeoPull> {
  const w = opts.workDir
  const conf = join(w, 'registries.conf')
  const policy = join(w, 'policy.json')
  const authPath = join(w, 'auth.json')
  await writeFile(conf, registriesConf(opts.route))
  await writeFile(policy, POLICY_ACCEPT_ANYTHING)
  await writeFile(authPath, authFile([opts.route.alias, opts.route.mirror], opts.creds))
  const out = join(w, opts.outName ?? 'out')
  const ref = opts.reference ?? 'v1'
  const src = `docker://${opts.route.alias}/${opts.repo}${ref.startsWith('sha256:') ? `@${ref}` : `:${ref}`}`
  const dest = (opts.dest ?? 'oci') === 'oci' ? `oci:${out}` : `dir:${out}`
  const args = ['--registries-conf', conf, '--policy', policy]
  if (opts.arch !== undefined) args.push('--override-arch', opts.arch, '--override-os', 'linux')
  args.push('copy', '--src-tls-verify=false', '--src-authfile', authPath)
  if (opts.all === true) args.push('--all')
  if (opts.flagCreds !== undefined) args.push('--src-creds', `${opts.flagCreds.username}:${opts.flagCreds.password}`)
  args.push(src, dest)
  const result = await run('skopeo', args, { timeoutMs: opts.timeoutMs ?? 90_000, env: isolatedEnv(w) })
  return { result, out }
}

/**
 * The environment of a client: no proxy variables (loopback only) and a HOME of its own, so that
 * no credentials or caches of the machine's user are read.
 */
export function isolatedEnv(home: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: home,
    XDG_RUNTIME_DIR: join(home, 'xdg-run'),
    XDG_CONFIG_HOME: join(home, 'xdg-config'),
    TMPDIR: '/tmp',
    ...extra,
  }
}

// ---------------------------------------------------------------- containerd

/** `DIR/<alias>/hosts.toml`: the alias registry (plain HTTP) behind one pull/resolve mirror. */
export async function writeHostsDir(dir: string, route: MirrorRoute): Promise<string> {
  const d = join(dir, route.alias)
  await mkdir(d, { recursive: true })
  await writeFile(
    join(d, 'hosts.toml'),
    [
      `server = "http://${route.alias}"`,
      '',
      `[host."http://${route.mirror}"]`,
      '  capabilities = ["pull", "resolve"]',
      '',
    ].join('\n'),
  )
  return dir
}

export interface CtrPullOptions {
  route: MirrorRoute
  repo: string
  reference?: string
  /** `linux/arm64` etc.; default: containerd's own platform. */
  platform?: string
  allPlatforms?: boolean
  creds?: Credentials
  /** `images pull --snapshotter native` (default) or `content fetch` (no unpack). */
  mode?: 'pull' | 'fetch'
  timeoutMs?: number
}

/** A private containerd (root, state, sockets in a short temp dir; cri plugin off). */
export class Containerd {
  readonly dir: string
  readonly socket: string
  readonly root: string
  readonly proc: Proc
  readonly namespace = 'shoal-e2e'

  private constructor(dir: string, proc: Proc) {
    this.dir = dir
    this.socket = join(dir, 'c.sock')
    this.root = join(dir, 'root')
    this.proc = proc
  }

  static async start(): Promise<Containerd> {
    const dir = await shortTempDir('sh-ctd-')
    const socket = join(dir, 'c.sock')
    const config = [
      'version = 2',
      `root = "${join(dir, 'root')}"`,
      `state = "${join(dir, 'state')}"`,
      `plugin_dir = ""`,
      'disabled_plugins = [',
      '  "io.containerd.grpc.v1.cri",',
      '  "io.containerd.snapshotter.v1.aufs",',
      '  "io.containerd.snapshotter.v1.btrfs",',
      '  "io.containerd.snapshotter.v1.devmapper",',
      '  "io.containerd.snapshotter.v1.zfs",',
      '  "io.containerd.tracing.processor.v1.otlp",',
      '  "io.containerd.internal.v1.tracing",',
      ']',
      '',
      '[grpc]',
      `  address = "${socket}"`,
      '',
      '[ttrpc]',
      `  address = "${socket}.ttrpc"`,
      '',
      '[debug]',
      '  level = "info"',
      '',
      '[metrics]',
      '  address = ""',
      '',
      '[plugins]',
      '  [plugins."io.containerd.internal.v1.opt"]',
      `    path = "${join(dir, 'opt')}"`,
      '',
    ].join('\n')
    const configFile = join(dir, 'config.toml')
    await writeFile(configFile, config)
    const proc = startProcess('containerd', '/usr/bin/containerd', ['--config', configFile], {
      env: isolatedEnv(dir),
      logFile: join(dir, 'containerd.log'),
    })
    const c = new Containerd(dir, proc)
    try {
      await waitUntil(
        'containerd to answer on its socket',
        async () => {
          if (!proc.running) throw new Error(`containerd exited\n${proc.describe()}`)
          const ok = await access(socket).then(
            () => true,
            () => false,
          )
          if (!ok) return false
          const r = await c.ctr(['version'], { timeoutMs: 5_000 })
          return r.code === 0
        },
        20_000,
        100,
      )
    } catch (err) {
      await c.cleanup()
      throw new Error(`${String(err)}\n${proc.describe()}`)
    }
    return c
  }

  /** `ctr -a SOCK -n NS ARGS…` */
  ctr(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    return run('/usr/bin/ctr', ['-a', this.socket, '-n', this.namespace, ...args], {
      timeoutMs: 60_000,
      env: isolatedEnv(this.dir),
      ...opts,
    })
  }

  /** Pulls (or fetches) through the mirror with a fresh hosts dir. Never throws on failure. */
  async pull(opts: CtrPullOptions): Promise<RunResult> {
    const hostsDir = await writeHostsDir(join(this.dir, 'hosts'), opts.route)
    const ref = opts.reference ?? 'v1'
    const image = `${opts.route.alias}/${opts.repo}${ref.startsWith('sha256:') ? `@${ref}` : `:${ref}`}`
    const args =
      (opts.mode ?? 'pull') === 'pull'
        ? ['images', 'pull', '--snapshotter', 'native', '--hosts-dir', hostsDir]
        : ['content', 'fetch', '--hosts-dir', hostsDir]
    if (opts.platform !== undefined) args.push('--platform', opts.platform)
    if (opts.allPlatforms === true) args.push('--all-platforms')
    if (opts.creds !== undefined) args.push('--user', `${opts.creds.username}:${opts.creds.password}`)
    args.push(image)
    return this.ctr(args, { timeoutMs: opts.timeoutMs ?? 90_000 })
  }

  /** Every blob of the content store, hashed (the file names are the digests containerd expects). */
  contentBlobs(): Promise<BlobCheck> {
    return checkBlobFiles(join(this.root, 'io.containerd.content.v1.content', 'blobs', 'sha256'))
  }

  /** `ctr content ls -q`: the digests containerd has committed. */
  async contentList(): Promise<string[]> {
    const r = await this.ctr(['content', 'ls', '-q'], { timeoutMs: 20_000 })
    if (r.code !== 0) throw new Error(`ctr content ls failed: ${r.stderr}`)
    return r.stdout
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.startsWith('sha256:'))
  }

  async stop(): Promise<void> {
    await this.proc.stop(10_000)
  }

  async cleanup(): Promise<void> {
    await this.stop()
    await removeTempDir(this.dir)
  }
}

// ---------------------------------------------------------------- podman

export interface PodmanPullOptions {
  repo: string
  reference?: string
  /** The user's credentials, in the auth file for the alias and the mirror (see SkopeoPullOptions). */
  creds?: Credentials
  /** `--creds` (reaches the image's own registry only, not a mirror). */
  flagCreds?: Credentials
  arch?: string
  timeoutMs?: number
}

export interface PodmanImage {
  Id: string
  Digest: string
  RepoDigests: string[]
  Architecture: string
  Os: string
  RootFS: { Type: string; Layers: string[] }
}

export interface StorageLayer {
  id: string
  parent?: string
  'compressed-diff-digest'?: string
  'compressed-size'?: number
  'diff-digest'?: string
  'diff-size'?: number
}

/** podman as root with its own storage (vfs) and run root in a short temp dir. */
export class Podman {
  readonly dir: string
  readonly route: MirrorRoute

  private constructor(dir: string, route: MirrorRoute) {
    this.dir = dir
    this.route = route
  }

  static async create(route: MirrorRoute): Promise<Podman> {
    const dir = await shortTempDir('sh-pod-')
    await mkdir(join(dir, 'tmp'), { recursive: true })
    await writeFile(join(dir, 'registries.conf'), registriesConf(route))
    await writeFile(join(dir, 'policy.json'), POLICY_ACCEPT_ANYTHING)
    await writeFile(join(dir, 'auth.json'), '{"auths":{}}')
    await writeFile(join(dir, 'containers.conf'), '[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n')
    await writeFile(
      join(dir, 'storage.conf'),
      `[storage]\ndriver = "vfs"\ngraphroot = "${join(dir, 'root')}"\nrunroot = "${join(dir, 'run')}"\n`,
    )
    return new Podman(dir, route)
  }

  /** `podman --root … --runroot … --storage-driver vfs … ARGS` with the mirror's registries.conf. */
  podman(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const d = this.dir
    const global = [
      '--root',
      join(d, 'root'),
      '--runroot',
      join(d, 'run'),
      '--tmpdir',
      join(d, 'tmp'),
      '--storage-driver',
      'vfs',
      '--cgroup-manager',
      'cgroupfs',
      '--events-backend',
      'file',
    ]
    return run('/usr/bin/podman', [...global, ...args], {
      timeoutMs: 90_000,
      env: isolatedEnv(d, {
        CONTAINERS_REGISTRIES_CONF: join(d, 'registries.conf'),
        CONTAINERS_CONF: join(d, 'containers.conf'),
        CONTAINERS_STORAGE_CONF: join(d, 'storage.conf'),
        REGISTRY_AUTH_FILE: join(d, 'auth.json'),
      }),
      ...opts,
    })
  }

  imageRef(repo: string, reference = 'v1'): string {
    return `${this.route.alias}/${repo}${reference.startsWith('sha256:') ? `@${reference}` : `:${reference}`}`
  }

  /** `podman pull --tls-verify=false --signature-policy … ALIAS/REPO:REF`. Never throws on failure. */
  async pull(opts: PodmanPullOptions): Promise<RunResult> {
    const authPath = join(this.dir, 'auth.json')
    await writeFile(authPath, authFile([this.route.alias, this.route.mirror], opts.creds))
    const args = ['pull', '--tls-verify=false', '--signature-policy', join(this.dir, 'policy.json')]
    args.push('--authfile', authPath)
    if (opts.flagCreds !== undefined) args.push('--creds', `${opts.flagCreds.username}:${opts.flagCreds.password}`)
    if (opts.arch !== undefined) args.push('--arch', opts.arch)
    args.push(this.imageRef(opts.repo, opts.reference))
    return this.podman(args, { timeoutMs: opts.timeoutMs ?? 90_000 })
  }

  async inspect(ref: string): Promise<PodmanImage> {
    const r = await this.podman(['image', 'inspect', ref], { timeoutMs: 30_000 })
    if (r.code !== 0) throw new Error(`podman image inspect failed: ${r.stderr}`)
    const parsed = JSON.parse(r.stdout) as PodmanImage[]
    const first = parsed[0]
    if (first === undefined) throw new Error('podman image inspect returned nothing')
    return first
  }

  /**
   * containers-storage's record of the layers (vfs-layers/layers.json): per layer the digest of
   * the compressed blob podman pulled and of the uncompressed tar it applied.
   */
  async storageLayers(): Promise<StorageLayer[]> {
    return readJson<StorageLayer[]>(join(this.dir, 'root', 'vfs-layers', 'layers.json'))
  }

  async cleanup(): Promise<void> {
    // vfs layers are plain directories: nothing is mounted, removing the tree is enough.
    await removeTempDir(this.dir)
  }
}

/** Reads a JSON file. */
export async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, 'utf8')) as T
}
