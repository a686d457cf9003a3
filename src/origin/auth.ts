/**
 * WWW-Authenticate parsing and the bearer-token cache (Docker registry token auth,
 * https://distribution.github.io/distribution/spec/auth/token/).
 */

export interface Challenge {
  scheme: string
  params: Record<string, string>
}

/** Parses `Bearer realm="…",service="…",scope="…"` (and `Basic realm="…"`). First challenge only. */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (header === undefined) return undefined
  const m = /^\s*([A-Za-z][A-Za-z0-9_-]*)\s*(.*)$/s.exec(header)
  if (m?.[1] === undefined) return undefined
  const params: Record<string, string> = {}
  const re = /([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/gy
  const rest = m[2] ?? ''
  re.lastIndex = 0
  let p: RegExpExecArray | null = re.exec(rest)
  while (p !== null && p[1] !== undefined) {
    params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '')
    if (re.lastIndex >= rest.length) break
    p = re.exec(rest)
  }
  return { scheme: m[1].toLowerCase(), params }
}

interface CachedToken {
  token: string
  expiresAt: number
}

/** Tokens by (registry, scope). Bounded: the oldest entries go first. */
export class TokenCache {
  private readonly tokens = new Map<string, CachedToken>()
  private readonly maxEntries: number

  constructor(maxEntries = 1024) {
    this.maxEntries = maxEntries
  }

  get(key: string, now = Date.now()): string | undefined {
    const t = this.tokens.get(key)
    if (t === undefined) return undefined
    if (t.expiresAt <= now) {
      this.tokens.delete(key)
      return undefined
    }
    return t.token
  }

  set(key: string, token: string, ttlMs: number, now = Date.now()): void {
    this.tokens.delete(key)
    this.tokens.set(key, { token, expiresAt: now + ttlMs })
    while (this.tokens.size > this.maxEntries) {
      const oldest = this.tokens.keys().next().value
      if (oldest === undefined) break
      this.tokens.delete(oldest)
    }
  }
}

export function basicAuth(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`
}
