import { ShoalError } from '../errors.js'

/** A validated sha256 content digest. Only sha256 is accepted: it is what every registry uses. */
export interface Digest {
  readonly algorithm: 'sha256'
  readonly hex: string
  /** `sha256:<hex>` */
  readonly value: string
}

const SHA256 = /^sha256:([a-f0-9]{64})$/

export function parseDigest(input: string): Digest {
  const m = SHA256.exec(input)
  if (m === null || m[1] === undefined) {
    throw new ShoalError('DIGEST_INVALID', `invalid or unsupported digest: ${truncate(input)}`, {
      status: 400,
    })
  }
  return { algorithm: 'sha256', hex: m[1], value: input }
}

export function isDigest(input: string): boolean {
  return SHA256.test(input)
}

export function truncate(s: string, max = 80): string {
  return s.length > max ? `${s.slice(0, max)}…` : s
}
