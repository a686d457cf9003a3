import type { ServerResponse } from 'node:http'
import { ShoalError, type ShoalErrorCode } from '../errors.js'

/** Shoal's error codes as the OCI distribution spec's error codes. */
const OCI_CODES: Partial<Record<ShoalErrorCode, string>> = {
  UPSTREAM_UNREACHABLE: 'UNAVAILABLE',
  UPSTREAM_ERROR: 'UNKNOWN',
  RANGE_INVALID: 'RANGE_INVALID',
  CONFIG_INVALID: 'UNKNOWN',
  ABORTED: 'UNKNOWN',
}

const DEFAULT_STATUS: Partial<Record<ShoalErrorCode, number>> = {
  BLOB_UNKNOWN: 404,
  MANIFEST_UNKNOWN: 404,
  NAME_UNKNOWN: 404,
  NAME_INVALID: 400,
  DIGEST_INVALID: 400,
  UNAUTHORIZED: 401,
  DENIED: 403,
  TOOMANYREQUESTS: 429,
  UNSUPPORTED: 405,
  RANGE_INVALID: 416,
  UPSTREAM_UNREACHABLE: 503,
  UPSTREAM_ERROR: 502,
}

export function sendError(res: ServerResponse, err: unknown, head: boolean): { status: number; code: string } {
  const e = err instanceof ShoalError ? err : new ShoalError('UPSTREAM_ERROR', 'internal error')
  const status = err instanceof ShoalError ? (e.status ?? DEFAULT_STATUS[e.code] ?? 500) : 500
  const code = OCI_CODES[e.code] ?? e.code
  const body = JSON.stringify({ errors: [{ code, message: e.message, detail: e.detail ?? null }] })
  res.statusCode = status
  for (const [k, v] of Object.entries(e.headers)) res.setHeader(k, v)
  res.setHeader('content-type', 'application/json')
  res.setHeader('content-length', Buffer.byteLength(body))
  res.end(head ? undefined : body)
  return { status, code }
}
