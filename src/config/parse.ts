import { ShoalError } from '../errors.js'

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** `30s`, `5m`, `1500ms`, `2h`; a bare number is seconds. */
export function parseDuration(key: string, value: unknown): number {
  if (
    typeof value === 'number' &&
    Number.isFinite(value) &&
    value >= 0 &&
    Number.isSafeInteger(Math.round(value * 1000))
  ) {
    return Math.round(value * 1000)
  }
  if (typeof value === 'string') {
    const m = DURATION.exec(value.trim())
    if (m?.[1] !== undefined) {
      const ms = Number(m[1]) * (DURATION_UNITS[m[2] ?? 's'] ?? 1000)
      if (Number.isFinite(ms)) return Math.round(ms)
    }
  }
  throw configError(key, value, 'a duration such as 30s, 5m or 1500ms')
}

const SIZE = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?$/i
const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
}

/** `10GiB`, `500MB`, `4096`; a bare number is bytes. */
export function parseSize(key: string, value: unknown): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value
  if (typeof value === 'string') {
    const m = SIZE.exec(value.trim())
    if (m?.[1] !== undefined) {
      const n = Math.floor(Number(m[1]) * (SIZE_UNITS[(m[2] ?? 'b').toLowerCase()] ?? 1))
      if (Number.isSafeInteger(n)) return n
    }
  }
  throw configError(key, value, 'a size such as 10GiB, 500MB or 4096')
}

export function parseHostPort(key: string, value: unknown): { host: string; port: number } {
  if (typeof value === 'string') {
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(value.trim())
    if (m?.[1] !== undefined && m[2] !== undefined) {
      const port = Number(m[2])
      if (port >= 0 && port <= 65535) {
        return { host: m[1].replace(/^\[|\]$/g, ''), port }
      }
    }
  }
  throw configError(key, value, 'HOST:PORT, e.g. 127.0.0.1:5000 or [::1]:5000')
}

export function parseUrl(key: string, value: unknown): URL {
  if (typeof value === 'string') {
    try {
      const url = new URL(value.includes('://') ? value : `https://${value}`)
      if (url.protocol === 'http:' || url.protocol === 'https:') return url
    } catch {
      // fall through to the error
    }
  }
  throw configError(key, value, 'an http:// or https:// URL')
}

export function parseBoolean(key: string, value: unknown): boolean {
  if (typeof value === 'boolean') return value
  if (value === 'true' || value === '1' || value === 'yes') return true
  if (value === 'false' || value === '0' || value === 'no') return false
  throw configError(key, value, 'true or false')
}

export function parseString(key: string, value: unknown): string {
  if (typeof value === 'string' && value.length > 0) return value
  throw configError(key, value, 'a non-empty string')
}

export function configError(key: string, value: unknown, expected: string): ShoalError {
  let shown: string
  try {
    shown = JSON.stringify(value) ?? String(value)
  } catch {
    shown = String(value)
  }
  return new ShoalError('CONFIG_INVALID', `config: ${key}: expected ${expected}, got ${shown}`)
}
