/**
 * `shoal configure containerd|docker|podman`: writes the runtime's registry-mirror config so that
 * pulls go through the local Shoal daemon, and `--undo` takes it back.
 *
 * - containerd: `/etc/containerd/certs.d/<registry>/hosts.toml` per registry (containerd adds
 *   `?ns=<registry>` to mirror requests, so Shoal fetches from the right upstream).
 * - docker: `registry-mirrors` in `/etc/docker/daemon.json`, merged into the existing JSON.
 * - podman (skopeo, buildah): `/etc/containers/registries.conf.d/shoal.conf`.
 *
 * Before a file that Shoal did not write is changed, it is copied to `FILE.shoal-backup` (once:
 * an existing backup is the original and is never overwritten); `--undo` restores it, or removes
 * what Shoal created. Running twice changes nothing the second time. `--root` prefixes every
 * path (tests, or an init container writing into a host mount).
 */
import { copyFile, mkdir, readdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { Command } from 'commander'
import { DEFAULT_LISTEN } from '../constants.js'
import { ShoalError } from '../errors.js'
import { DOCKER_HUB_HOSTS } from '../oci/reference.js'
import { defaultMirror } from './pull.js'

export type Runtime = 'containerd' | 'docker' | 'podman'
const RUNTIMES: Runtime[] = ['containerd', 'docker', 'podman']

export const BACKUP_SUFFIX = '.shoal-backup'
/** First line of every TOML file Shoal writes: how --undo knows a file is its own. */
export const MARKER = '# Written by `shoal configure`'

const DEFAULT_DIRS: Record<Runtime, string> = {
  containerd: '/etc/containerd/certs.d',
  docker: '/etc/docker',
  podman: '/etc/containers/registries.conf.d',
}

/** `host`, `host:port`, `[v6]:port`: a registry as image references name it. */
const HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]{0,252})|\[[0-9a-fA-F:.]+\])(?::\d{1,5})?$/

export interface ConfigureOptions {
  registry?: string[]
  mirror?: string
  root?: string
  dir?: string
  undo?: boolean
}

export function registerConfigure(program: Command): void {
  program
    .command('configure')
    .description("write a container runtime's registry-mirror config to pull through the local Shoal daemon")
    .argument('<runtime>', RUNTIMES.join(', '))
    .option(
      '--registry <host...>',
      'registries to mirror (default docker.io); =URL sets where the runtime falls back to (default https://HOST, http:// for loopback)',
    )
    .option('--mirror <url>', `the Shoal daemon (default: SHOAL_LISTEN or ${DEFAULT_LISTEN})`)
    .option('--root <dir>', 'prefix every path with this directory (a host mount, or a test root)')
    .option(
      '--dir <dir>',
      'the config directory under --root (default: /etc/containerd/certs.d, /etc/docker, /etc/containers/registries.conf.d)',
    )
    .option('--undo', 'restore the backups (or remove the files shoal created)')
    .addHelpText(
      'after',
      `
Examples:
  $ shoal configure containerd --registry docker.io --registry ghcr.io
  $ shoal configure docker --mirror http://127.0.0.1:5000
  $ shoal configure podman --undo
  $ shoal configure containerd --root /host     # from a Kubernetes init container`,
    )
    .action(async (runtime: string, opts: ConfigureOptions) => {
      const lines = await configure(runtime, opts)
      process.stdout.write(`${lines.join('\n')}\n`)
    })
}

interface RegistryTarget {
  /** The name in image references (`docker.io`, `ghcr.io`, `127.0.0.1:5311`). */
  host: string
  /** Where the runtime itself goes when the mirror fails. */
  server: URL
}

/** A file Shoal manages: what it should hold given what it holds now. */
interface FilePlan {
  path: string
  render(existing: string | undefined): string
  /** The file is wholly Shoal's (TOML with the marker), not merged into. */
  owned: boolean
  /** --undo without a backup: what is left of the file (undefined: remove it). */
  unrender?: (existing: string) => string | undefined
}

/** Runs the command; returns the lines to print. */
export async function configure(runtimeText: string, opts: ConfigureOptions): Promise<string[]> {
  if (!(RUNTIMES as string[]).includes(runtimeText)) {
    throw new ShoalError('CONFIG_INVALID', `unknown runtime "${runtimeText}" (expected ${RUNTIMES.join(', ')})`)
  }
  const runtime = runtimeText as Runtime
  const root = opts.root ?? '/'
  const dir = join(root, opts.dir ?? DEFAULT_DIRS[runtime])
  const mirror = defaultMirror({ mirror: opts.mirror })
  const mirrorText = mirror.origin
  const registries = (opts.registry ?? ['docker.io']).map(parseRegistry)
  const seen = new Set<string>()
  for (const r of registries) {
    if (seen.has(r.host)) throw new ShoalError('CONFIG_INVALID', `--registry: ${r.host} given twice`)
    seen.add(r.host)
  }
  const out: string[] = []
  const say = (text: string): void => {
    out.push(`${runtime}: ${text}`)
  }
  let plans: FilePlan[]
  if (runtime === 'containerd') {
    if (opts.undo === true && opts.registry === undefined) {
      plans = await ourContainerdFiles(dir)
    } else {
      plans = registries.map((r) => ({
        path: join(dir, r.host, 'hosts.toml'),
        owned: true,
        render: () => containerdHosts(r, mirrorText),
      }))
    }
  } else if (runtime === 'docker') {
    const other = registries.filter((r) => !DOCKER_HUB_HOSTS.has(r.host))
    if (other.length > 0) {
      throw new ShoalError(
        'CONFIG_INVALID',
        `docker mirrors Docker Hub only; ${other.map((r) => r.host).join(', ')} need containerd or podman`,
      )
    }
    plans = [
      {
        path: join(dir, 'daemon.json'),
        owned: false,
        render: (existing) => dockerDaemonJson(existing, mirror),
        unrender: (existing) => dockerDaemonJsonWithout(existing, mirror),
      },
    ]
  } else {
    plans = [{ path: join(dir, 'shoal.conf'), owned: true, render: () => podmanConf(registries, mirror) }]
  }

  let changed = 0
  for (const plan of plans) {
    changed += opts.undo === true ? await undoFile(plan, say) : await applyFile(plan, say)
  }
  if (opts.undo === true) {
    if (runtime === 'containerd') {
      // Registry directories Shoal made and left empty go too.
      for (const plan of plans) await rmdir(dirname(plan.path)).catch(() => {})
    }
    if (plans.length === 0) say(`nothing to undo under ${dir}`)
    return out
  }
  if (changed === 0) say('already configured; nothing changed')
  else if (runtime === 'containerd') {
    const note = await containerdConfigNote(root)
    if (note !== undefined) say(note)
  } else if (runtime === 'docker') {
    say('apply with `systemctl reload docker` (SIGHUP to dockerd); docker uses the mirror for Docker Hub images only')
  }
  if (runtime === 'podman' && registries.some((r) => !DOCKER_HUB_HOSTS.has(r.host))) {
    say(
      'note: podman and skopeo do not tell the mirror which registry they want; Shoal serves them from its default upstream (and the registries entry of that host)',
    )
  }
  return out
}

function parseRegistry(text: string): RegistryTarget {
  const eq = text.indexOf('=')
  const host = eq === -1 ? text : text.slice(0, eq)
  if (!HOST.test(host)) throw new ShoalError('CONFIG_INVALID', `--registry: not a registry host: "${host}"`)
  const canonical = DOCKER_HUB_HOSTS.has(host) ? 'docker.io' : host
  let server: URL
  if (eq !== -1) {
    try {
      server = new URL(text.slice(eq + 1))
    } catch {
      throw new ShoalError('CONFIG_INVALID', `--registry: not a URL after "=": "${text}"`)
    }
    if (server.protocol !== 'http:' && server.protocol !== 'https:') {
      throw new ShoalError('CONFIG_INVALID', `--registry: expected an http(s) URL after "=": "${text}"`)
    }
  } else if (canonical === 'docker.io') {
    server = new URL('https://registry-1.docker.io')
  } else {
    server = new URL(`${isLoopback(host) ? 'http' : 'https'}://${host}`)
  }
  return { host: canonical, server }
}

function isLoopback(host: string): boolean {
  const name = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')
  return name === 'localhost' || name === '::1' || /^127\./.test(name)
}

function toml(s: string): string {
  return JSON.stringify(s)
}

export function containerdHosts(r: RegistryTarget, mirror: string): string {
  return [
    `${MARKER} (shoal pulls through its local mirror first, then ${r.server.origin})`,
    `server = ${toml(r.server.origin)}`,
    '',
    `[host.${toml(mirror)}]`,
    '  capabilities = ["pull", "resolve"]',
    '',
  ].join('\n')
}

export function podmanConf(registries: RegistryTarget[], mirror: URL): string {
  const lines = [`${MARKER}: podman, skopeo and buildah pull through the local Shoal mirror first.`]
  for (const r of registries) {
    const location =
      r.host === 'docker.io' ? 'registry-1.docker.io' : `${r.server.host}${r.server.pathname.replace(/\/$/, '')}`
    lines.push('', '[[registry]]', `prefix = ${toml(r.host)}`, `location = ${toml(location)}`)
    if (r.server.protocol === 'http:') lines.push('insecure = true')
    lines.push('', '[[registry.mirror]]', `location = ${toml(mirror.host)}`)
    if (mirror.protocol === 'http:') lines.push('insecure = true')
  }
  return `${lines.join('\n')}\n`
}

function parseDockerJson(existing: string | undefined): Record<string, unknown> {
  if (existing === undefined || existing.trim() === '') return {}
  let doc: unknown
  try {
    doc = JSON.parse(existing)
  } catch (err) {
    throw new ShoalError('CONFIG_INVALID', `daemon.json is not valid JSON (${(err as Error).message}); fix it first`)
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ShoalError('CONFIG_INVALID', 'daemon.json does not hold a JSON object; fix it first')
  }
  return doc as Record<string, unknown>
}

function sameMirror(a: unknown, mirror: URL): boolean {
  return typeof a === 'string' && a.replace(/\/+$/, '') === mirror.origin
}

/** daemon.json with the mirror first in `registry-mirrors`; every other key kept as it was. */
export function dockerDaemonJson(existing: string | undefined, mirror: URL): string {
  const doc = parseDockerJson(existing)
  const mirrors = doc['registry-mirrors']
  if (mirrors !== undefined && !Array.isArray(mirrors)) {
    throw new ShoalError('CONFIG_INVALID', 'daemon.json: "registry-mirrors" is not a list; fix it first')
  }
  const list = (mirrors ?? []) as unknown[]
  const needInsecure = mirror.protocol === 'http:' && !isLoopback(mirror.host)
  const insecure = doc['insecure-registries']
  const insecureList = Array.isArray(insecure) ? (insecure as unknown[]) : []
  const hasMirror = list.some((m) => sameMirror(m, mirror))
  const hasInsecure = !needInsecure || insecureList.includes(mirror.host)
  if (hasMirror && hasInsecure && existing !== undefined) return existing
  if (!hasMirror) doc['registry-mirrors'] = [mirror.origin, ...list]
  if (!hasInsecure) doc['insecure-registries'] = [...insecureList, mirror.host]
  return `${JSON.stringify(doc, null, 2)}\n`
}

/** --undo of a daemon.json Shoal created: its entries out; nothing left → the file goes. */
export function dockerDaemonJsonWithout(existing: string, mirror: URL): string | undefined {
  const doc = parseDockerJson(existing)
  const mirrors = doc['registry-mirrors']
  if (!Array.isArray(mirrors) || !mirrors.some((m) => sameMirror(m, mirror))) return existing
  const rest = mirrors.filter((m) => !sameMirror(m, mirror))
  if (rest.length > 0) doc['registry-mirrors'] = rest
  else delete doc['registry-mirrors']
  const insecure = doc['insecure-registries']
  if (Array.isArray(insecure) && insecure.includes(mirror.host)) {
    const left = insecure.filter((h) => h !== mirror.host)
    if (left.length > 0) doc['insecure-registries'] = left
    else delete doc['insecure-registries']
  }
  return Object.keys(doc).length === 0 ? undefined : `${JSON.stringify(doc, null, 2)}\n`
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new ShoalError('CONFIG_INVALID', `cannot read ${path}: ${(err as Error).message}`)
  }
}

async function exists(path: string): Promise<boolean> {
  return (await readText(path)) !== undefined
}

async function writeAtomic(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  const tmp = `${path}.shoal-tmp`
  await writeFile(tmp, text, { mode: 0o644 })
  await rename(tmp, path)
}

/** Writes one file if it differs; returns 1 when something changed. */
async function applyFile(plan: FilePlan, say: (text: string) => void): Promise<number> {
  const existing = await readText(plan.path)
  const wanted = plan.render(existing)
  if (existing === wanted) {
    say(`unchanged ${plan.path}`)
    return 0
  }
  const backup = `${plan.path}${BACKUP_SUFFIX}`
  const ours = plan.owned && existing?.startsWith(MARKER) === true
  if (existing !== undefined && !ours && !(await exists(backup))) {
    await copyFile(plan.path, backup)
    say(`backed up ${plan.path} to ${backup}`)
  }
  await writeAtomic(plan.path, wanted)
  say(`${existing === undefined ? 'created' : 'updated'} ${plan.path}`)
  return 1
}

/** Restores the backup, or removes (or strips) what Shoal wrote; returns 1 when something changed. */
async function undoFile(plan: FilePlan, say: (text: string) => void): Promise<number> {
  const backup = `${plan.path}${BACKUP_SUFFIX}`
  if (await exists(backup)) {
    await rename(backup, plan.path)
    say(`restored ${plan.path} from ${backup}`)
    return 1
  }
  const existing = await readText(plan.path)
  if (existing === undefined) {
    say(`nothing to undo: ${plan.path} does not exist`)
    return 0
  }
  if (plan.owned) {
    if (!existing.startsWith(MARKER)) {
      say(`left ${plan.path} alone: shoal did not write it`)
      return 0
    }
    await rm(plan.path, { force: true })
    say(`removed ${plan.path}`)
    return 1
  }
  const left = plan.unrender === undefined ? existing : plan.unrender(existing)
  if (left === existing) {
    say(`nothing to undo in ${plan.path}`)
    return 0
  }
  if (left === undefined) {
    await rm(plan.path, { force: true })
    say(`removed ${plan.path}`)
  } else {
    await writeAtomic(plan.path, left)
    say(`removed the Shoal mirror from ${plan.path}`)
  }
  return 1
}

/** containerd --undo without --registry: every registry directory Shoal wrote or backed up. */
async function ourContainerdFiles(dir: string): Promise<FilePlan[]> {
  const names = await readdir(dir).catch(() => [] as string[])
  const plans: FilePlan[] = []
  for (const name of names.sort()) {
    const path = join(dir, name, 'hosts.toml')
    const text = await readText(path).catch(() => undefined)
    if (text?.startsWith(MARKER) === true || (await exists(`${path}${BACKUP_SUFFIX}`).catch(() => false))) {
      plans.push({ path, owned: true, render: () => '' })
    }
  }
  return plans
}

/** containerd reads certs.d only when its CRI config names it; ctr needs --hosts-dir. */
async function containerdConfigNote(root: string): Promise<string | undefined> {
  const config = await readText(join(root, 'etc/containerd/config.toml')).catch(() => undefined)
  if (config !== undefined && /config_path\s*=\s*"[^"]*certs\.d"/.test(config)) return undefined
  return (
    'note: containerd uses these files when /etc/containerd/config.toml sets config_path = "/etc/containerd/certs.d" ' +
    'under [plugins."io.containerd.grpc.v1.cri".registry] (then restart containerd); ctr takes --hosts-dir /etc/containerd/certs.d'
  )
}
