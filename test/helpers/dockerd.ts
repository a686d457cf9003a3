/**
 * dockerd as a pull client of Shoal. dockerd mirrors only Docker Hub names (`docker pull x:1` asks
 * the mirror for `/v2/library/x/…` and falls back to registry-1.docker.io), so everything runs in a
 * network namespace of its own that has only loopback and no route out: dockerd, Shoal and the
 * origin docker-registry all listen on or talk to the namespace's 127.0.0.1, and a fallback to
 * docker.io cannot succeed. Processes enter the namespace with `nsenter --net=/run/netns/NS`, which
 * execs the command (the PID we keep is the command's own); `ip netns exec` would also remount
 * /sys, hiding the cgroup mounts dockerd needs.
 *
 * The test process itself stays outside the namespace, so HTTP from the test to Shoal or the origin
 * goes through a small Node probe started inside it (`nsenter … node -e PROBE URL`).
 */
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isolatedEnv } from './clients.js'
import { type ImageLayout, POLICY_ACCEPT_ANYTHING } from './image.js'
import {
  describeRun,
  type Proc,
  type RunOptions,
  type RunResult,
  readSettled,
  removeTempDir,
  run,
  runOk,
  type StartOptions,
  shortTempDir,
  startProcess,
  waitUntil,
} from './proc.js'
import { type OriginRequest, REGISTRY_BIN } from './registry.js'
import { type RequestLogLine, SHOAL_MAIN } from './shoal.js'

/** The Debian docker.io package's daemon and its matching CLI (`/usr/local/bin/docker` is newer). */
export const DOCKERD_BIN = '/usr/sbin/dockerd'
export const DOCKER_BIN = '/usr/bin/docker'

/** PATH for dockerd: the Debian containerd, runc and docker-init. */
const SYSTEM_PATH = '/usr/sbin:/usr/bin:/sbin:/bin'

// ---------------------------------------------------------------- network namespace

/** A network namespace with only `lo` (up) and no route out. Delete it after stopping what runs inside. */
export class LoopbackNetns {
  readonly path: string

  private constructor(readonly name: string) {
    this.path = `/run/netns/${name}`
  }

  static async create(prefix = 'sh-dkr'): Promise<LoopbackNetns> {
    const name = `${prefix}-${randomBytes(4).toString('hex')}`
    await runOk('ip', ['netns', 'add', name], { timeoutMs: 10_000 })
    const ns = new LoopbackNetns(name)
    try {
      await runOk('ip', ['-n', name, 'link', 'set', 'lo', 'up'], { timeoutMs: 10_000 })
    } catch (err) {
      await ns.delete()
      throw err
    }
    return ns
  }

  /** `nsenter --net=/run/netns/NS -- COMMAND ARGS…` (nsenter execs COMMAND: same PID). */
  wrap(command: string, args: readonly string[]): [string, string[]] {
    return ['nsenter', [`--net=${this.path}`, '--', command, ...args]]
  }

  /** A long-running process inside the namespace. */
  start(name: string, command: string, args: readonly string[], opts: StartOptions = {}): Proc {
    const [cmd, argv] = this.wrap(command, args)
    return startProcess(name, cmd, argv, opts)
  }

  /** A command inside the namespace, to completion (bounded). */
  run(command: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const [cmd, argv] = this.wrap(command, args)
    return run(cmd, argv, opts)
  }

  /** `ip -o link` and the IPv4 and IPv6 routing tables of the namespace. */
  async describeNetwork(): Promise<{ links: string[]; routes4: string[]; routes6: string[] }> {
    const lines = (r: RunResult): string[] =>
      r.stdout
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '')
    const [links, routes4, routes6] = await Promise.all([
      runOk('ip', ['-n', this.name, '-o', 'link', 'show'], { timeoutMs: 10_000 }),
      runOk('ip', ['-n', this.name, '-4', 'route', 'show', 'table', 'all'], { timeoutMs: 10_000 }),
      runOk('ip', ['-n', this.name, '-6', 'route', 'show', 'table', 'all'], { timeoutMs: 10_000 }),
    ])
    return { links: lines(links), routes4: lines(routes4), routes6: lines(routes6) }
  }

  /** PIDs of the processes still inside the namespace. */
  async pids(): Promise<number[]> {
    const r = await run('ip', ['netns', 'pids', this.name], { timeoutMs: 10_000 })
    return r.stdout
      .split('\n')
      .map((l) => Number(l.trim()))
      .filter((n) => Number.isInteger(n) && n > 0)
  }

  /**
   * Deletes the namespace; never throws. Stop the processes inside by PID first: `ip netns del`
   * with processes inside leaves the namespace alive. Whatever is still inside was started by the
   * test (directly or by dockerd), and is SIGKILLed by PID.
   */
  async delete(): Promise<void> {
    const left = await this.pids().catch(() => [] as number[])
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
    await run('ip', ['netns', 'del', this.name], { timeoutMs: 10_000 }).catch(() => undefined)
  }
}

// ---------------------------------------------------------------- HTTP from inside

/** One HTTP exchange as seen from inside the namespace. */
export interface ProbeReply {
  status: number
  headers: Record<string, string>
  size: number
  /** sha256 of the body. */
  digest: string
}

const PROBE = `
const { createHash } = require('node:crypto')
const [url, method, headers, timeout] = process.argv.slice(1)
fetch(url, { method, headers: JSON.parse(headers), redirect: 'manual', signal: AbortSignal.timeout(Number(timeout)) }).then(
  async (res) => {
    const body = Buffer.from(await res.arrayBuffer())
    const digest = 'sha256:' + createHash('sha256').update(body).digest('hex')
    process.stdout.write(JSON.stringify({ status: res.status, headers: Object.fromEntries(res.headers), size: body.length, digest }))
  },
  (err) => process.stdout.write(JSON.stringify({ error: String(err) })),
)
`

export interface ProbeOptions {
  method?: 'GET' | 'HEAD'
  headers?: Record<string, string>
  timeoutMs?: number
}

/** A loopback HTTP request made inside the namespace; undefined when the connection failed. */
export async function probe(ns: LoopbackNetns, url: string, opts: ProbeOptions = {}): Promise<ProbeReply | undefined> {
  const u = new URL(url)
  if (u.hostname !== '127.0.0.1') throw new Error(`not a loopback URL: ${url}`)
  const timeoutMs = opts.timeoutMs ?? 10_000
  const r = await ns.run(
    process.execPath,
    ['-e', PROBE, url, opts.method ?? 'GET', JSON.stringify(opts.headers ?? {}), String(timeoutMs)],
    { timeoutMs: timeoutMs + 10_000, env: { PATH: SYSTEM_PATH } },
  )
  if (r.code !== 0) throw new Error(`probe failed\n${describeRun(r)}`)
  const parsed = JSON.parse(r.stdout) as ProbeReply | { error: string }
  return 'error' in parsed ? undefined : parsed
}

/** Polls `url` from inside the namespace until it answers a ready status (bounded). */
export async function waitForHttpIn(
  ns: LoopbackNetns,
  url: string,
  proc: Proc,
  timeoutMs = 15_000,
  ready: (status: number) => boolean = (s) => s === 200,
): Promise<void> {
  let last: number | undefined
  try {
    await waitUntil(
      `${url} (inside ${ns.name})`,
      async () => {
        if (!proc.running) throw new Error(`${proc.name} exited while waiting for ${url}`)
        last = (await probe(ns, url, { timeoutMs: 2_000 }))?.status
        return last !== undefined && ready(last)
      },
      timeoutMs,
      100,
    )
  } catch (err) {
    throw new Error(`${String(err)} (last status ${String(last)})\n${proc.describe()}`)
  }
}

// ---------------------------------------------------------------- origin and Shoal inside

/** `127.0.0.1 - - [date] "GET /v2/… HTTP/1.1" 200 3148259 "" "containerd/1.6.20"` (as in registry.ts). */
const ACCESS_LINE = /^\S+ - \S+ \[[^\]]*\] "([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3}) (\d+|-) "[^"]*" "([^"]*)"$/gm

export interface NsRegistry {
  readonly proc: Proc
  /** `http://127.0.0.1:PORT` (inside the namespace) */
  readonly url: string
  readonly host: string
  /** Every request in its access log so far. */
  requests(): Promise<OriginRequest[]>
  stop(): Promise<void>
}

/** docker-registry (anonymous, filesystem storage in `dir`) on the namespace's 127.0.0.1:PORT. */
export async function startRegistryIn(ns: LoopbackNetns, dir: string, port: number): Promise<NsRegistry> {
  const storageDir = join(dir, 'storage')
  await mkdir(storageDir, { recursive: true })
  const configFile = join(dir, 'config.yml')
  const config = [
    'version: 0.1',
    'log:',
    '  level: info',
    '  accesslog:',
    '    disabled: false',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${storageDir}`,
    'http:',
    `  addr: 127.0.0.1:${port}`,
    '  secret: shoal-e2e-not-a-secret',
  ]
  await writeFile(configFile, `${config.join('\n')}\n`)
  const logFile = join(dir, 'registry.log')
  const proc = ns.start('docker-registry', REGISTRY_BIN, ['serve', configFile], {
    env: { PATH: SYSTEM_PATH, REGISTRY_HTTP_ADDR: `127.0.0.1:${port}` },
    logFile,
  })
  const url = `http://127.0.0.1:${port}`
  try {
    await waitForHttpIn(ns, `${url}/v2/`, proc)
  } catch (err) {
    await proc.stop()
    throw err
  }
  return {
    proc,
    url,
    host: `127.0.0.1:${port}`,
    async requests() {
      const text = await readSettled(logFile)
      const out: OriginRequest[] = []
      for (const m of text.matchAll(ACCESS_LINE)) {
        const [, method, path, status, bytes, userAgent] = m
        if (method === undefined || path === undefined || status === undefined) continue
        out.push({
          method,
          path,
          status: Number(status),
          bytes: bytes === undefined || bytes === '-' ? 0 : Number(bytes),
          userAgent: userAgent ?? '',
        })
      }
      return out
    },
    async stop() {
      await proc.stop()
    },
  }
}

/** `skopeo copy --preserve-digests` of a single-platform layout, run inside the namespace. */
export async function pushImageIn(ns: LoopbackNetns, image: ImageLayout, registry: string, ref: string): Promise<void> {
  const policy = `${image.dir}.policy.json`
  await writeFile(policy, POLICY_ACCEPT_ANYTHING)
  const args = ['--policy', policy, 'copy', '--quiet', '--dest-tls-verify=false', '--preserve-digests']
  args.push('--dest-no-creds', `oci:${image.dir}:${image.tag}`, `docker://${registry}/${ref}`)
  const r = await ns.run('skopeo', args, { timeoutMs: 60_000, env: isolatedEnv(`${image.dir}.home`) })
  if (r.code !== 0) throw new Error(`push failed\n${describeRun(r)}`)
}

export interface NsShoal {
  readonly proc: Proc
  /** `http://127.0.0.1:PORT` (inside the namespace) */
  readonly url: string
  /** `127.0.0.1:PORT` */
  readonly host: string
  readonly logFile: string
  /** The `request` lines of its log so far. */
  requests(): Promise<RequestLogLine[]>
  stop(): Promise<void>
}

/** `node dist/src/cli/main.js daemon` on the namespace's 127.0.0.1:PORT, data in `dir`. */
export async function startShoalIn(
  ns: LoopbackNetns,
  dir: string,
  port: number,
  defaultUpstream: string,
): Promise<NsShoal> {
  await mkdir(dir, { recursive: true })
  const logFile = join(dir, 'shoal.log')
  const args = [
    SHOAL_MAIN,
    'daemon',
    '--listen',
    `127.0.0.1:${port}`,
    '--data-dir',
    join(dir, 'data'),
    '--default-upstream',
    defaultUpstream,
    '--log-level',
    'info',
  ]
  // No SHOAL_* variable and no proxy of the environment leaks in.
  const env: NodeJS.ProcessEnv = { PATH: SYSTEM_PATH, HOME: dir, NODE_ENV: 'test' }
  const proc = ns.start('shoal', process.execPath, args, { env, logFile })
  const url = `http://127.0.0.1:${port}`
  try {
    await waitForHttpIn(ns, `${url}/v2/`, proc)
  } catch (err) {
    await proc.stop()
    throw err
  }
  return {
    proc,
    url,
    host: `127.0.0.1:${port}`,
    logFile,
    async requests() {
      const text = await readSettled(logFile)
      const out: RequestLogLine[] = []
      for (const line of text.split('\n')) {
        if (!line.startsWith('{')) continue
        let l: Record<string, unknown>
        try {
          l = JSON.parse(line) as Record<string, unknown>
        } catch {
          continue
        }
        if (l.msg !== 'request' || typeof l.url !== 'string' || typeof l.status !== 'number') continue
        const entry: RequestLogLine = { method: String(l.method), url: l.url, status: l.status }
        if (typeof l.code === 'string') entry.code = l.code
        out.push(entry)
      }
      return out
    },
    async stop() {
      await proc.stop(10_000)
    },
  }
}

// ---------------------------------------------------------------- dockerd

export interface DockerImage {
  Id: string
  RepoTags: string[]
  RepoDigests: string[]
  Architecture: string
  Os: string
  RootFS: { Type: string; Layers: string[] }
}

export interface DockerdOptions {
  /** `127.0.0.1:PORT` of the mirror (inside the namespace). */
  mirror: string
  /**
   * Storage drivers to try in turn: the next one when dockerd exits during start-up with the
   * previous one (overlay2 fails on an overlayfs /tmp, for one). Default: overlay2, then vfs.
   */
  storageDrivers?: string[]
  readyTimeoutMs?: number
}

/**
 * A private dockerd in the namespace: its own data root, exec root, socket, pidfile and config file
 * (which also keeps its trust key out of /etc/docker), no iptables, no bridge.
 */
export class Dockerd {
  readonly socket: string
  readonly dataRoot: string
  readonly execRoot: string
  readonly logFile: string
  /** The storage driver dockerd reports. */
  driver = ''

  private constructor(
    readonly dir: string,
    readonly proc: Proc,
    /** What the earlier attempts with other storage drivers printed. */
    readonly failedAttempts: string[],
  ) {
    this.socket = join(dir, 'd.sock')
    this.dataRoot = join(dir, 'data')
    this.execRoot = join(dir, 'exec')
    this.logFile = join(dir, 'dockerd.log')
  }

  static async start(ns: LoopbackNetns, opts: DockerdOptions): Promise<Dockerd> {
    const failed: string[] = []
    for (const driver of opts.storageDrivers ?? ['overlay2', 'vfs']) {
      const d = await Dockerd.startWith(ns, opts, driver, failed)
      if (d !== undefined) return d
    }
    throw new Error(`dockerd did not start with any storage driver\n${failed.join('\n\n')}`)
  }

  /** One start-up with one storage driver: the daemon, or undefined when it exited meanwhile. */
  private static async startWith(
    ns: LoopbackNetns,
    opts: DockerdOptions,
    driver: string,
    failed: string[],
  ): Promise<Dockerd | undefined> {
    const dir = await shortTempDir('sh-dkd-')
    const configFile = join(dir, 'daemon.json')
    await writeFile(configFile, JSON.stringify({ 'deprecated-key-path': join(dir, 'key.json') }))
    const args = [
      '--config-file',
      configFile,
      '--data-root',
      join(dir, 'data'),
      '--exec-root',
      join(dir, 'exec'),
      '--pidfile',
      join(dir, 'd.pid'),
      '-H',
      `unix://${join(dir, 'd.sock')}`,
      '--storage-driver',
      driver,
      '--iptables=false',
      '--ip6tables=false',
      '--bridge=none',
      '--registry-mirror',
      `http://${opts.mirror}`,
      '--insecure-registry',
      opts.mirror,
    ]
    const proc = ns.start('dockerd', DOCKERD_BIN, args, {
      env: { PATH: SYSTEM_PATH, HOME: dir },
      logFile: join(dir, 'dockerd.log'),
    })
    const d = new Dockerd(dir, proc, failed)
    let exited = false
    try {
      await waitUntil(
        `dockerd (${driver}) to answer on its socket`,
        async () => {
          if (!proc.running) {
            exited = true
            return true
          }
          const r = await d.docker(['version', '--format', '{{.Server.Version}}'], { timeoutMs: 5_000 })
          return r.code === 0
        },
        opts.readyTimeoutMs ?? 30_000,
        200,
      )
    } catch (err) {
      const text = proc.describe()
      await d.cleanup()
      throw new Error(`${String(err)}\n${text}`)
    }
    if (exited) {
      failed.push(`--storage-driver ${driver}: ${proc.describe(3_000)}`)
      await d.cleanup()
      return undefined
    }
    const info = await d.docker(['info', '--format', '{{.Driver}}'], { timeoutMs: 10_000 })
    d.driver = info.stdout.trim()
    return d
  }

  /** `/usr/bin/docker -H unix://SOCK ARGS…` with a config dir of its own (no user credentials). */
  docker(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const home = join(this.dir, 'cli')
    return run(DOCKER_BIN, ['-H', `unix://${this.socket}`, ...args], {
      timeoutMs: 60_000,
      env: isolatedEnv(home, { DOCKER_CONFIG: join(home, '.docker') }),
      ...opts,
    })
  }

  async inspectImage(ref: string): Promise<DockerImage> {
    const r = await this.docker(['image', 'inspect', ref], { timeoutMs: 20_000 })
    if (r.code !== 0) throw new Error(`docker image inspect failed\n${describeRun(r)}`)
    const first = (JSON.parse(r.stdout) as DockerImage[])[0]
    if (first === undefined) throw new Error('docker image inspect returned nothing')
    return first
  }

  /**
   * The uncompressed digest (diff_id) dockerd recorded for a compressed layer digest it pulled
   * (`image/<driver>/distribution/diffid-by-digest/sha256/<hex>`); undefined when it has none.
   */
  async diffIdOf(layerDigest: string): Promise<string | undefined> {
    const hex = layerDigest.replace(/^sha256:/, '')
    const path = join(this.dataRoot, 'image', this.driver, 'distribution', 'diffid-by-digest', 'sha256', hex)
    return readFile(path, 'utf8').then(
      (s) => s.trim(),
      () => undefined,
    )
  }

  /** dockerd's log so far. */
  log(): Promise<string> {
    return readSettled(this.logFile)
  }

  /**
   * Stops dockerd by PID (SIGTERM, SIGKILL after 20 s), then its containerd by PID if it outlived
   * it, then unmounts what dockerd left mounted under its directory (it bind-mounts its data root
   * onto itself and undoes that only on a clean shutdown). Never throws.
   */
  async stop(): Promise<void> {
    const containerdPid = await readFile(join(this.execRoot, 'containerd', 'containerd.pid'), 'utf8').then(
      (s) => Number(s.trim()),
      () => 0,
    )
    await this.proc.stop(20_000).catch(() => undefined)
    if (containerdPid > 0) {
      await killByPid(containerdPid, 10_000)
    }
    await unmountUnder(this.dir)
  }

  /** Stops and removes its directory. Never throws. */
  async cleanup(): Promise<void> {
    await this.stop()
    await removeTempDir(this.dir)
  }
}

/** Whether a process with this PID exists (and is not a zombie). */
async function alive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  if (stat === '') return false
  // pid (comm) STATE …
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
}

/** SIGTERM by PID, SIGKILL when still there after `graceMs`; bounded; never throws. */
async function killByPid(pid: number, graceMs: number): Promise<void> {
  for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
    if (!(await alive(pid))) return
    try {
      process.kill(pid, sig)
    } catch {
      return
    }
    await waitUntil(`pid ${pid} to exit`, async () => !(await alive(pid)), graceMs, 100).catch(() => undefined)
  }
}

/** Mount points at or under `dir` (from /proc/self/mountinfo), deepest first. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '')
  const unoctal = (s: string): string =>
    s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
  const points = text
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map(unoctal)
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
  return [...new Set(points)].sort((a, b) => b.length - a.length)
}

/** `umount -R` of every mount point under `dir` (only paths in /tmp), a few rounds for stacked mounts; never throws. */
export async function unmountUnder(dir: string): Promise<void> {
  if (!dir.startsWith('/tmp/')) return
  for (let round = 0; round < 4; round++) {
    const points = await mountsUnder(dir)
    if (points.length === 0) return
    for (const p of points) {
      const r = await run('umount', ['-R', p], { timeoutMs: 10_000 }).catch(() => undefined)
      if (r === undefined || r.code !== 0) await run('umount', ['-l', p], { timeoutMs: 10_000 }).catch(() => undefined)
    }
  }
}
