import { ShoalError, type ShoalErrorCode } from '../errors.js'
import type { OriginResponse } from './client.js'

/**
 * Turns an origin's non-success answer into a ShoalError, keeping what the client must see
 * (the auth challenge, Retry-After). The body is dropped.
 */
export async function originError(res: OriginResponse, notFound: ShoalErrorCode, what: string): Promise<ShoalError> {
  await res.body.dump().catch(() => {})
  switch (res.status) {
    case 401: {
      const headers: Record<string, string> = {}
      const challenge = res.headers['www-authenticate']
      if (challenge !== undefined) headers['www-authenticate'] = challenge
      return new ShoalError('UNAUTHORIZED', `authentication required for ${what}`, { status: 401, headers })
    }
    case 403:
      return new ShoalError('DENIED', `access to ${what} denied`, { status: 403 })
    case 404:
      return new ShoalError(notFound, `${what} not found upstream`, { status: 404 })
    case 429: {
      const headers: Record<string, string> = {}
      const retryAfter = res.headers['retry-after']
      if (retryAfter !== undefined) headers['retry-after'] = retryAfter
      return new ShoalError('TOOMANYREQUESTS', `origin rate-limited ${what}`, { status: 429, headers })
    }
    default:
      return new ShoalError('UPSTREAM_ERROR', `origin answered ${res.status} for ${what}`, { status: 502 })
  }
}
