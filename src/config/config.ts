import { readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import {
  DEFAULT_DATA_DIR,
  DEFAULT_LISTEN,
  DEFAULT_LOG_LEVEL,
  DEFAULT_TAG_TTL_MS,
  DEFAULT_UPSTREAM,
} from '../constants.js'
import { ShoalError } from '../errors.js'
import { canonicalRegistryHost } from '../oci/reference.js'
import { configError, parseBoolean, parseDuration, parseHostPort, parseString, parseUrl } from './parse.js'

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

export interface DaemonConfig {
  listen: { host: string; port: number }
  dataDir: string
  defaultUpstream: URL
  logLevel: LogLevel
  tagTtlMs: number
  registries: RegistryConfig[]
  dockerConfig?: string
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
    const host = canonicalRegistryHost(parseString(`${key}.host`, e.host))
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

function stripUndefined(o: RawConfig): RawConfig {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined))
}

function expandHome(p: string): string {
  return p.startsWith('~/') ? `${homedir()}${p.slice(1)}` : p
}
