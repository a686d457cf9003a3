import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { parseRange, type RangeResult } from '../../../src/proxy/range.js'

const full: RangeResult = { kind: 'full' }
const unsatisfiable: RangeResult = { kind: 'unsatisfiable' }
const partial = (start: number, end: number): RangeResult => ({ kind: 'partial', start, end })

describe('parseRange', () => {
  test('no header: the full body', () => {
    assert.deepEqual(parseRange(undefined, 10), full)
  })

  test('first-last (inclusive) becomes [start, end)', () => {
    assert.deepEqual(parseRange('bytes=0-0', 10), partial(0, 1))
    assert.deepEqual(parseRange('bytes=0-9', 10), partial(0, 10))
    assert.deepEqual(parseRange('bytes=2-5', 10), partial(2, 6))
    assert.deepEqual(parseRange('bytes=9-9', 10), partial(9, 10))
  })

  test('a last position past the end is clamped', () => {
    assert.deepEqual(parseRange('bytes=5-100', 10), partial(5, 10))
    assert.deepEqual(parseRange('bytes=0-10', 10), partial(0, 10))
  })

  test('open-ended first-', () => {
    assert.deepEqual(parseRange('bytes=0-', 10), partial(0, 10))
    assert.deepEqual(parseRange('bytes=7-', 10), partial(7, 10))
    assert.deepEqual(parseRange('bytes=9-', 10), partial(9, 10))
  })

  test('suffix -N: the last N bytes, all of them when N exceeds the size', () => {
    assert.deepEqual(parseRange('bytes=-1', 10), partial(9, 10))
    assert.deepEqual(parseRange('bytes=-3', 10), partial(7, 10))
    assert.deepEqual(parseRange('bytes=-10', 10), partial(0, 10))
    assert.deepEqual(parseRange('bytes=-500', 10), partial(0, 10))
  })

  test('unsatisfiable: first position at or past the end, zero-length suffix, empty body', () => {
    assert.deepEqual(parseRange('bytes=10-', 10), unsatisfiable)
    assert.deepEqual(parseRange('bytes=10-20', 10), unsatisfiable)
    assert.deepEqual(parseRange('bytes=11-11', 10), unsatisfiable)
    assert.deepEqual(parseRange('bytes=-0', 10), unsatisfiable)
    assert.deepEqual(parseRange('bytes=0-', 0), unsatisfiable)
    assert.deepEqual(parseRange('bytes=0-0', 0), unsatisfiable)
    assert.deepEqual(parseRange('bytes=-5', 0), unsatisfiable)
  })

  test('last < first is an invalid range: ignored (full body)', () => {
    assert.deepEqual(parseRange('bytes=5-2', 10), full)
    assert.deepEqual(parseRange('bytes=50-2', 10), full)
  })

  test('multiple ranges are ignored (full body)', () => {
    assert.deepEqual(parseRange('bytes=0-1,3-4', 10), full)
    assert.deepEqual(parseRange('bytes=0-1, 3-4', 10), full)
    assert.deepEqual(parseRange('bytes=-1,0-', 10), full)
  })

  test('malformed headers and other units are ignored (full body)', () => {
    const ignored = [
      '',
      'bytes',
      'bytes=',
      'bytes=-',
      'bytes=a-b',
      'bytes=1.5-2',
      'bytes=+1-2',
      'bytes=-1-2',
      'bytes=1--2',
      'bytes =0-1',
      'bytes= 0-1',
      'bytes=0 -1',
      'items=0-1',
      '0-1',
    ]
    for (const h of ignored) assert.deepEqual(parseRange(h, 10), full, JSON.stringify(h))
  })

  test('surrounding whitespace is tolerated', () => {
    assert.deepEqual(parseRange('  bytes=1-2  ', 10), partial(1, 3))
  })

  test('large blobs: positions beyond 2^32 are exact', () => {
    const size = 6 * 1024 ** 3 + 7
    assert.deepEqual(parseRange('bytes=5368709120-', size), partial(5368709120, size))
    assert.deepEqual(parseRange('bytes=5368709120-5368709129', size), partial(5368709120, 5368709130))
    assert.deepEqual(parseRange('bytes=-10', size), partial(size - 10, size))
  })

  test('a huge first position is unsatisfiable', () => {
    assert.deepEqual(parseRange('bytes=99999999999999999999-', 10), unsatisfiable)
    assert.deepEqual(parseRange('bytes=99999999999999999999-99999999999999999999', 10), unsatisfiable)
    assert.deepEqual(parseRange('bytes=9999999999999999-', 10), unsatisfiable)
  })

  test('a huge last position within 16 digits is clamped', () => {
    assert.deepEqual(parseRange('bytes=0-9999999999999999', 10), partial(0, 10))
    assert.deepEqual(parseRange('bytes=-9999999999999999', 10), partial(0, 10))
  })

  test('bug: a last position of more than 16 digits makes a satisfiable range unsatisfiable', () => {
    // RFC 9110 §14.1.2: a last-pos at or past the end means "to the end"; a client may ask
    // bytes=0-<huge> without knowing the size. 17+ digits are answered 416 instead.
    assert.deepEqual(parseRange('bytes=0-99999999999999999999', 10), partial(0, 10))
    assert.deepEqual(parseRange('bytes=3-18446744073709551615', 10), partial(3, 10))
  })

  test('bug: a suffix length of more than 16 digits is unsatisfiable instead of the whole body', () => {
    // RFC 9110 §14.1.2: "If the selected representation is shorter than the specified
    // suffix-length, the entire representation is used."
    assert.deepEqual(parseRange('bytes=-99999999999999999999', 10), partial(0, 10))
  })

  test('bug: leading zeros beyond 16 digits make a small position unsatisfiable', () => {
    // first-pos = 1*DIGIT: "00000000000000000005" is 5.
    assert.deepEqual(parseRange('bytes=00000000000000000005-', 10), partial(5, 10))
  })
})
