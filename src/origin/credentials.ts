import { readFileSync } from 'node:fs'
import { ShoalError } from '../errors.js'
import { canonicalRegistryHost } from '../oci/reference.js'

export interface Credentials {
  username: string
  password: string
}

/**
 * Reads the `auths` of a docker `config.json` (`auth` = base64 user:password, or
 * username/password fields). Credential helpers are not run.
 */
export function readDockerConfig(path: string): Map<string, Credentials> {
  let doc: unknown
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new ShoalError('CONFIG_INVALID', `config: dockerConfig: cannot read ${path} as JSON`, { cause: err })
  }
  const out = new Map<string, Credentials>()
  if (typeof doc !== 'object' || doc === null) return out
  const auths = (doc as { auths?: unknown }).auths
  if (typeof auths !== 'object' || auths === null) return out
  for (const [key, value] of Object.entries(auths as Record<string, unknown>)) {
    if (typeof value !== 'object' || value === null) continue
    const v = value as { auth?: unknown; username?: unknown; password?: unknown }
    let creds: Credentials | undefined
    if (typeof v.auth === 'string' && v.auth !== '') {
      const decoded = Buffer.from(v.auth, 'base64').toString('utf8')
      const colon = decoded.indexOf(':')
      if (colon > 0) creds = { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
    } else if (typeof v.username === 'string' && typeof v.password === 'string') {
      creds = { username: v.username, password: v.password }
    }
    if (creds !== undefined) out.set(registryKey(key), creds)
  }
  return out
}

/** `https://index.docker.io/v1/` → `registry-1.docker.io`; `host:port` stays. */
function registryKey(key: string): string {
  let host = key
  if (host.includes('://')) {
    try {
      host = new URL(host).host
    } catch {
      // keep as is
    }
  }
  host = host.replace(/\/.*$/, '')
  return canonicalRegistryHost(host)
}
