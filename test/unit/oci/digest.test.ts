import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, test } from 'node:test'
import { ShoalError } from '../../../src/errors.js'
import { isDigest, parseDigest, truncate } from '../../../src/oci/digest.js'

const HEX = createHash('sha256').update('hello').digest('hex')

describe('parseDigest', () => {
  test('a sha256 digest', () => {
    const d = parseDigest(`sha256:${HEX}`)
    assert.deepEqual(d, { algorithm: 'sha256', hex: HEX, value: `sha256:${HEX}` })
  })

  test('rejects other algorithms, bad hex and malformed strings with DIGEST_INVALID/400', () => {
    const bad = [
      '',
      HEX,
      `sha256:${HEX.slice(1)}`,
      `sha256:${HEX}0`,
      `sha256:${HEX.toUpperCase()}`,
      `sha512:${HEX}${HEX}`,
      `SHA256:${HEX}`,
      `sha256:${HEX.slice(1)}g`,
      ` sha256:${HEX}`,
      `sha256:${HEX}\n`,
      `sha256:${HEX}/../x`,
      'sha256:',
    ]
    for (const input of bad) {
      assert.equal(isDigest(input), false, JSON.stringify(input))
      assert.throws(
        () => parseDigest(input),
        (err: unknown) => err instanceof ShoalError && err.code === 'DIGEST_INVALID' && err.status === 400,
        JSON.stringify(input),
      )
    }
  })

  test('the error message shows a long input truncated', () => {
    const long = `sha256:${'z'.repeat(500)}`
    assert.throws(
      () => parseDigest(long),
      (err: unknown) => err instanceof Error && err.message.length < 120 && err.message.endsWith('…'),
    )
  })
})

describe('isDigest', () => {
  test('true exactly for valid sha256 digests', () => {
    assert.equal(isDigest(`sha256:${HEX}`), true)
    assert.equal(isDigest(`sha256:${'0'.repeat(64)}`), true)
    assert.equal(isDigest('latest'), false)
  })
})

describe('truncate', () => {
  test('keeps short strings, cuts long ones with an ellipsis', () => {
    assert.equal(truncate('abc'), 'abc')
    assert.equal(truncate('a'.repeat(80)), 'a'.repeat(80))
    assert.equal(truncate('a'.repeat(81)), `${'a'.repeat(80)}…`)
    assert.equal(truncate('abcdef', 3), 'abc…')
  })
})
