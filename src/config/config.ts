import { readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import {
  DEFAULT_DATA_DIR,
  DEFAULT_LISTEN,
  DEFAULT_LOG_LEVEL,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_TAG_TTL_MS,
  DEFAULT_UPSTREAM,
} from '../constants.js'
import { ShoalError } from '../errors.js'
import { canonicalRegistryHost } from '../oci/reference.js'
import { configError, parseBoolean, parseDuration, parseHostPort, parseSize, parseString, parseUrl } from './parse.js'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

export interface RegistryConfig {
  /** The name clients use for this registry (containerd's `?ns=`, image references). */
  host: string
  /** Where Shoal fetches from. */
  url: URL
  username?: string
  password?: string
  caFile?: string
  insecure: boolean
}

export interface SwarmConfig {
  /** libp2p listen multiaddrs; the swarm is off when empty. */
  listen: string[]
  /** Multiaddrs (with or without /p2p/) or `dns:NAME:PORT`. */
  bootstrap: string[]
  mdns: boolean
  /** Path of the swarm key file (closed swarm; Noise only). */
  swarmKey?: string
  /** Connection encryption offered, in order of preference; Noise is always among them. */
  encryption: ('noise' | 'tls')[]
  maxConnections: number
}

export interface DaemonConfig {
  listen: { host: string; port: number }
  /** Metrics and admin endpoints; off when unset. */
  adminListen?: { host: string; port: number }
  swarm: SwarmConfig
  dataDir: string
  defaultUpstream: URL
  logLevel: LogLevel
  tagTtlMs: number
  registries: RegistryConfig[]
  dockerConfig?: string
  /** Upload to peers and download from origins, bytes/s; unlimited by default. */
  uploadRate?: number
  originRate?: number
  /** Blob requests to origins in flight at once; unlimited by default. */
  maxOriginRequests?: number
  /** Disk quota for the cache: bytes or a share of the data dir's volume; none by default. */
  cacheMax?: { bytes: number } | { percent: number }
}

/** Options as they come from flags, environment or file, before validation. */
export type RawConfig = Record<string, unknown>

/** Keys accepted in the config file, with their environment variable and flag. */
const KEYS = {
  listen: 'SHOAL_LISTEN',
  dataDir: 'SHOAL_DATA_DIR',
  defaultUpstream: 'SHOAL_DEFAULT_UPSTREAM',
  logLevel: 'SHOAL_LOG_LEVEL',
  tagTtl: 'SHOAL_TAG_TTL',
  dockerConfig: 'SHOAL_DOCKER_CONFIG',
  adminListen: 'SHOAL_ADMIN_LISTEN',
  p2pListen: 'SHOAL_P2P_LISTEN',
  bootstrap: 'SHOAL_BOOTSTRAP',
  mdns: 'SHOAL_MDNS',
  swarmKey: 'SHOAL_SWARM_KEY',
  p2pEncryption: 'SHOAL_P2P_ENCRYPTION',
  maxConnections: 'SHOAL_MAX_CONNECTIONS',
  cacheMax: 'SHOAL_CACHE_MAX',
  uploadRate: 'SHOAL_UPLOAD_RATE',
  originRate: 'SHOAL_ORIGIN_RATE',
  maxOriginRequests: 'SHOAL_MAX_ORIGIN_REQUESTS',
  registries: undefined,
} as const

export function readConfigFile(path: string): RawConfig {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ShoalError('CONFIG_INVALID', `config: cannot read ${path}: ${(err as Error).message}`, {
      cause: err,
    })
  }
  let doc: unknown
  try {
    doc = parseYaml(text)
  } catch (err) {
    throw new ShoalError('CONFIG_INVALID', `config: ${path} is not valid YAML: ${(err as Error).message}`, {
      cause: err,
    })
  }
  if (doc === null || doc === undefined) return {}
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ShoalError('CONFIG_INVALID', `config: ${path} must hold a mapping of keys`)
  }
  return doc as RawConfig
}

export function envConfig(env: NodeJS.ProcessEnv): RawConfig {
  const out: RawConfig = {}
  for (const [key, name] of Object.entries(KEYS)) {
    if (name !== undefined && env[name] !== undefined && env[name] !== '') out[key] = env[name]
  }
  return out
}

/**
 * Merge the sources (flags over environment over file) and validate eagerly: every error names
 * the key and the bad value.
 */
export function resolveConfig(sources: { flags?: RawConfig; env?: RawConfig; file?: RawConfig }): DaemonConfig {
  const file = sources.file ?? {}
  for (const key of Object.keys(file)) {
    if (!(key in KEYS)) {
      throw new ShoalError('CONFIG_INVALID', `config: unknown key "${key}" (known: ${Object.keys(KEYS).join(', ')})`)
    }
  }
  const merged: RawConfig = { ...file, ...stripUndefined(sources.env ?? {}), ...stripUndefined(sources.flags ?? {}) }

  const logLevel = merged.logLevel ?? DEFAULT_LOG_LEVEL
  if (typeof logLevel !== 'string' || !(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw configError('logLevel', logLevel, `one of ${LOG_LEVELS.join(', ')}`)
  }
  const config: DaemonConfig = {
    listen: parseHostPort('listen', merged.listen ?? DEFAULT_LISTEN),
    dataDir: resolve(parseString('dataDir', merged.dataDir ?? DEFAULT_DATA_DIR)),
    defaultUpstream: parseUrl('defaultUpstream', merged.defaultUpstream ?? DEFAULT_UPSTREAM),
    logLevel: logLevel as LogLevel,
    tagTtlMs: parseDuration('tagTtl', merged.tagTtl ?? DEFAULT_TAG_TTL_MS / 1000),
    registries: parseRegistries(merged.registries),
    swarm: {
      listen: parseList('p2pListen', merged.p2pListen).map((a, i) => parseMultiaddr(`p2pListen[${i}]`, a)),
      bootstrap: parseList('bootstrap', merged.bootstrap).map((a, i) => parseBootstrap(`bootstrap[${i}]`, a)),
      mdns: merged.mdns === undefined ? false : parseBoolean('mdns', merged.mdns),
      maxConnections:
        merged.maxConnections === undefined
          ? DEFAULT_MAX_CONNECTIONS
          : parseCount('maxConnections', merged.maxConnections),
      encryption: parseEncryption(merged.p2pEncryption),
    },
  }
  if (merged.cacheMax !== undefined) config.cacheMax = parseQuota('cacheMax', merged.cacheMax)
  if (merged.uploadRate !== undefined) config.uploadRate = parseRate('uploadRate', merged.uploadRate)
  if (merged.originRate !== undefined) config.originRate = parseRate('originRate', merged.originRate)
  if (merged.maxOriginRequests !== undefined) {
    config.maxOriginRequests = parseCount('maxOriginRequests', merged.maxOriginRequests)
  }
  if (merged.adminListen !== undefined) config.adminListen = parseHostPort('adminListen', merged.adminListen)
  if (merged.swarmKey !== undefined) {
    config.swarm.swarmKey = resolve(expandHome(parseString('swarmKey', merged.swarmKey)))
    if (config.swarm.encryption[0] !== 'noise') {
      throw configError(
        'p2pEncryption',
        merged.p2pEncryption,
        'noise first when a swarmKey is set (the key is bound into Noise)',
      )
    }
    config.swarm.encryption = ['noise']
  }
  if (merged.dockerConfig !== undefined) {
    config.dockerConfig = resolve(expandHome(parseString('dockerConfig', merged.dockerConfig)))
  }
  return config
}

function parseRegistries(value: unknown): RegistryConfig[] {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value)) throw configError('registries', value, 'a list of registries')
  const seen = new Set<string>()
  return value.map((entry: unknown, i) => {
    const key = `registries[${i}]`
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw configError(key, entry, 'a mapping with host and url')
    }
    const e = entry as Record<string, unknown>
    for (const k of Object.keys(e)) {
      if (!['host', 'url', 'username', 'password', 'caFile', 'insecure'].includes(k)) {
        throw new ShoalError('CONFIG_INVALID', `config: ${key}: unknown key "${k}"`)
      }
    }
    const rawHost = parseString(`${key}.host`, e.host)
    if (!/^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9a-fA-F:.]+\])(?::\d{1,5})?$/.test(rawHost)) {
      throw configError(
        `${key}.host`,
        e.host,
        'a registry host name with an optional port (no scheme, no path), e.g. ghcr.io',
      )
    }
    const host = canonicalRegistryHost(rawHost)
    if (seen.has(host)) throw configError(`${key}.host`, e.host, 'a host not listed twice')
    seen.add(host)
    const reg: RegistryConfig = {
      host,
      url: parseUrl(`${key}.url`, e.url ?? `https://${host}`),
      insecure: e.insecure === undefined ? false : parseBoolean(`${key}.insecure`, e.insecure),
    }
    if (e.username !== undefined) reg.username = parseString(`${key}.username`, e.username)
    if (e.password !== undefined) reg.password = parseString(`${key}.password`, e.password)
    if ((reg.username === undefined) !== (reg.password === undefined)) {
      throw new ShoalError('CONFIG_INVALID', `config: ${key}: username and password go together`)
    }
    if (e.caFile !== undefined) {
      const caFile = resolve(expandHome(parseString(`${key}.caFile`, e.caFile)))
      try {
        readFileSync(caFile)
      } catch (err) {
        throw new ShoalError('CONFIG_INVALID', `config: ${key}.caFile: cannot read ${caFile}`, { cause: err })
      }
      reg.caFile = caFile
    }
    return reg
  })
}

/** A list from YAML, repeated flags, or a comma-separated environment variable. */
function parseList(key: string, value: unknown): string[] {
  if (value === undefined || value === null) return []
  if (typeof value === 'string')
    return value
      .split(',')
      .map((v) => v.trim())
      .filter((v) => v !== '')
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value as string[]
  throw configError(key, value, 'a list of strings')
}

function parseMultiaddr(key: string, value: string): string {
  if (/^\/(ip4|ip6|dns4|dns6|dns)\/[^/]+\/tcp\/\d{1,5}(\/p2p\/[1-9A-HJ-NP-Za-km-z]+)?$/.test(value)) return value
  throw configError(key, value, 'a multiaddr such as /ip4/0.0.0.0/tcp/4001')
}

/** `/ip4/…/tcp/…[/p2p/…]`, or `dns:NAME:PORT` (every address NAME resolves to: a headless Service). */
function parseBootstrap(key: string, value: string): string {
  if (/^dns:[A-Za-z0-9.-]+:\d{1,5}$/.test(value)) return value
  const m = /^\/dns4?\/([^/]+)\/tcp\/(\d{1,5})$/.exec(value)
  if (m !== null) return `dns:${m[1]}:${m[2]}`
  return parseMultiaddr(key, value)
}

/** `50GiB`, `500MB` or `80%` (of the data dir's volume). */
function parseQuota(key: string, value: unknown): { bytes: number } | { percent: number } {
  if (typeof value === 'string' && /^\s*\d+(\.\d+)?\s*%\s*$/.test(value)) {
    const percent = Number.parseFloat(value)
    if (percent > 0 && percent <= 100) return { percent }
    throw configError(key, value, 'a percentage between 0 and 100')
  }
  const bytes = parseSize(key, value)
  if (bytes <= 0) throw configError(key, value, 'a size above zero, such as 50GiB, or a percentage such as 80%')
  return { bytes }
}

/** `100MiB` or `100MiB/s`: bytes per second. */
function parseRate(key: string, value: unknown): number {
  const v = typeof value === 'string' ? value.replace(/\/s$/, '') : value
  const n = parseSize(key, v)
  if (n <= 0) throw configError(key, value, 'a rate above zero, such as 100MiB/s')
  return n
}

/** `noise` (default), `tls,noise` (TLS preferred, Noise still accepted) or `noise,tls`. */
function parseEncryption(value: unknown): ('noise' | 'tls')[] {
  if (value === undefined) return ['noise']
  const list = parseList('p2pEncryption', value)
  if (list.length === 0 || list.some((v) => v !== 'noise' && v !== 'tls') || new Set(list).size !== list.length) {
    throw configError('p2pEncryption', value, 'noise, tls,noise or noise,tls')
  }
  if (!list.includes('noise')) list.push('noise')
  return list as ('noise' | 'tls')[]
}

function parseCount(key: string, value: unknown): number {
  const n = typeof value === 'string' ? Number(value) : value
  if (typeof n === 'number' && Number.isInteger(n) && n > 0) return n
  throw configError(key, value, 'a positive whole number')
}

function stripUndefined(o: RawConfig): RawConfig {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined))
}

function expandHome(p: string): string {
  return p.startsWith('~/') ? `${homedir()}${p.slice(1)}` : p
}
