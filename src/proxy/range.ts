/** A single byte range [start, end) resolved against a size, per RFC 9110 §14. */
export type RangeResult = { kind: 'full' } | { kind: 'partial'; start: number; end: number } | { kind: 'unsatisfiable' }

/**
 * Only one `bytes=` range is honoured; a multi-range or malformed header is ignored (the full
 * body is sent), as RFC 9110 allows.
 */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { kind: 'full' }
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (m === null) return { kind: 'full' }
  const [, a = '', b = ''] = m
  if (a === '' && b === '') return { kind: 'full' }
  if (a === '') {
    const suffix = Number(b)
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' }
    return { kind: 'partial', start: Math.max(0, size - suffix), end: size }
  }
  const start = Number(a)
  // last < first makes the range invalid, and an invalid Range is ignored (RFC 9110 §14.1.1).
  if (b !== '' && Number(b) < start) return { kind: 'full' }
  if (start >= size) return { kind: 'unsatisfiable' }
  const last = b === '' ? size - 1 : Math.min(Number(b), size - 1)
  return { kind: 'partial', start, end: last + 1 }
}
