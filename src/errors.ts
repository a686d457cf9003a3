/**
 * Errors carry a stable `code`; they become OCI error JSON only at the /v2/ edge (src/proxy).
 */

export type ShoalErrorCode =
  | 'BLOB_UNKNOWN'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'TOOMANYREQUESTS'
  | 'UNSUPPORTED'
  | 'RANGE_INVALID'
  | 'SIZE_INVALID'
  | 'MANIFEST_INVALID'
  | 'UPSTREAM_UNREACHABLE'
  | 'UPSTREAM_ERROR'
  | 'CONFIG_INVALID'
  | 'ABORTED'

export interface ShoalErrorOptions {
  cause?: unknown
  /** HTTP status to answer with at the /v2/ edge. */
  status?: number
  /** Headers to relay (WWW-Authenticate, Retry-After). */
  headers?: Record<string, string>
  detail?: unknown
}

export class ShoalError extends Error {
  readonly code: ShoalErrorCode
  readonly status: number | undefined
  readonly headers: Record<string, string>
  readonly detail: unknown

  constructor(code: ShoalErrorCode, message: string, options: ShoalErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'ShoalError'
    this.code = code
    this.status = options.status
    this.headers = options.headers ?? {}
    this.detail = options.detail
  }
}

export function isShoalError(err: unknown, code?: ShoalErrorCode): err is ShoalError {
  return err instanceof ShoalError && (code === undefined || err.code === code)
}

export function abortError(signal?: AbortSignal): Error {
  const reason: unknown = signal?.reason
  if (reason instanceof Error) return reason
  return new ShoalError('ABORTED', 'operation aborted')
}
