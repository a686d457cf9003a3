import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  configError,
  parseBoolean,
  parseDuration,
  parseHostPort,
  parseSize,
  parseString,
  parseUrl,
} from '../../../src/config/parse.js'
import { ShoalError } from '../../../src/errors.js'

/** Asserts a CONFIG_INVALID error whose message names the key and the JSON-shown value. */
function assertConfigError(fn: () => unknown, key: string, shown: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ShoalError, `expected a ShoalError, got ${String(err)}`)
    assert.equal(err.code, 'CONFIG_INVALID')
    assert.ok(err.message.includes(`${key}:`), `message names the key: ${err.message}`)
    assert.ok(err.message.includes(shown), `message names the value ${shown}: ${err.message}`)
    return true
  })
}

describe('parseDuration', () => {
  test('units ms, s, m, h, d', () => {
    assert.equal(parseDuration('k', '1500ms'), 1500)
    assert.equal(parseDuration('k', '30s'), 30_000)
    assert.equal(parseDuration('k', '5m'), 300_000)
    assert.equal(parseDuration('k', '2h'), 7_200_000)
    assert.equal(parseDuration('k', '1d'), 86_400_000)
  })

  test('a bare number (string or number) is seconds', () => {
    assert.equal(parseDuration('k', '30'), 30_000)
    assert.equal(parseDuration('k', 30), 30_000)
    assert.equal(parseDuration('k', 0), 0)
    assert.equal(parseDuration('k', 0.5), 500)
  })

  test('fractions, surrounding and inner spaces', () => {
    assert.equal(parseDuration('k', '1.5s'), 1500)
    assert.equal(parseDuration('k', ' 30s '), 30_000)
    assert.equal(parseDuration('k', '30 s'), 30_000)
    assert.equal(parseDuration('k', '0.0004s'), 0)
    assert.equal(parseDuration('k', '1.0006ms'), 1)
  })

  test('rejects malformed values, naming key and value', () => {
    assertConfigError(() => parseDuration('tagTtl', 'abc'), 'tagTtl', '"abc"')
    assertConfigError(() => parseDuration('tagTtl', ''), 'tagTtl', '""')
    assertConfigError(() => parseDuration('tagTtl', '-1s'), 'tagTtl', '"-1s"')
    assertConfigError(() => parseDuration('tagTtl', '5w'), 'tagTtl', '"5w"')
    assertConfigError(() => parseDuration('tagTtl', '5 minutes'), 'tagTtl', '"5 minutes"')
    assertConfigError(() => parseDuration('tagTtl', '.5s'), 'tagTtl', '".5s"')
    assertConfigError(() => parseDuration('tagTtl', -1), 'tagTtl', '-1')
    assertConfigError(() => parseDuration('tagTtl', Number.NaN), 'tagTtl', 'null')
    assertConfigError(() => parseDuration('tagTtl', Number.POSITIVE_INFINITY), 'tagTtl', 'null')
    assertConfigError(() => parseDuration('tagTtl', true), 'tagTtl', 'true')
    assertConfigError(() => parseDuration('tagTtl', null), 'tagTtl', 'null')
    assertConfigError(() => parseDuration('tagTtl', undefined), 'tagTtl', 'undefined')
  })

  test('the error says what is expected', () => {
    assert.throws(() => parseDuration('tagTtl', 'x'), /expected a duration such as 30s, 5m or 1500ms, got "x"/)
  })

  test('a string whose value overflows to Infinity is rejected', () => {
    assertConfigError(() => parseDuration('tagTtl', `${'9'.repeat(400)}s`), 'tagTtl', '"999')
  })

  test('bug: a finite number whose milliseconds overflow is accepted as Infinity', () => {
    // The string path checks Number.isFinite(ms); the number path returns value * 1000 unchecked.
    assertConfigError(() => parseDuration('tagTtl', 1e306), 'tagTtl', '1e+306')
  })
})

describe('parseSize', () => {
  test('decimal and binary units, case-insensitive', () => {
    assert.equal(parseSize('k', '500B'), 500)
    assert.equal(parseSize('k', '500MB'), 500_000_000)
    assert.equal(parseSize('k', '2KB'), 2000)
    assert.equal(parseSize('k', '1GB'), 1e9)
    assert.equal(parseSize('k', '1TB'), 1e12)
    assert.equal(parseSize('k', '1KiB'), 1024)
    assert.equal(parseSize('k', '1MiB'), 1024 ** 2)
    assert.equal(parseSize('k', '10GiB'), 10 * 1024 ** 3)
    assert.equal(parseSize('k', '1TiB'), 1024 ** 4)
    assert.equal(parseSize('k', '10gib'), 10 * 1024 ** 3)
    assert.equal(parseSize('k', '10mb'), 10_000_000)
  })

  test('a bare number is bytes', () => {
    assert.equal(parseSize('k', '4096'), 4096)
    assert.equal(parseSize('k', 4096), 4096)
    assert.equal(parseSize('k', 0), 0)
    assert.equal(parseSize('k', '0'), 0)
  })

  test('fractions round down to whole bytes; spaces allowed', () => {
    assert.equal(parseSize('k', '1.5KiB'), 1536)
    assert.equal(parseSize('k', '1.5'), 1)
    assert.equal(parseSize('k', ' 1 MiB '), 1024 ** 2)
  })

  test('rejects malformed, negative, fractional-number and unsafe values', () => {
    assertConfigError(() => parseSize('cacheMax', '10PB'), 'cacheMax', '"10PB"')
    assertConfigError(() => parseSize('cacheMax', '-1'), 'cacheMax', '"-1"')
    assertConfigError(() => parseSize('cacheMax', 'lots'), 'cacheMax', '"lots"')
    assertConfigError(() => parseSize('cacheMax', ''), 'cacheMax', '""')
    assertConfigError(() => parseSize('cacheMax', -1), 'cacheMax', '-1')
    assertConfigError(() => parseSize('cacheMax', 1.5), 'cacheMax', '1.5')
    assertConfigError(() => parseSize('cacheMax', '99999TiB'), 'cacheMax', '"99999TiB"')
    assertConfigError(() => parseSize('cacheMax', {}), 'cacheMax', '{}')
    assert.throws(() => parseSize('cacheMax', 'x'), /expected a size such as 10GiB, 500MB or 4096, got "x"/)
  })
})

describe('parseHostPort', () => {
  test('IPv4, names, bracketed IPv6', () => {
    assert.deepEqual(parseHostPort('listen', '127.0.0.1:5000'), { host: '127.0.0.1', port: 5000 })
    assert.deepEqual(parseHostPort('listen', '0.0.0.0:80'), { host: '0.0.0.0', port: 80 })
    assert.deepEqual(parseHostPort('listen', 'localhost:0'), { host: 'localhost', port: 0 })
    assert.deepEqual(parseHostPort('listen', '[::1]:5000'), { host: '::1', port: 5000 })
    assert.deepEqual(parseHostPort('listen', '[::]:65535'), { host: '::', port: 65535 })
    assert.deepEqual(parseHostPort('listen', ' example.com:443 '), { host: 'example.com', port: 443 })
  })

  test('rejects a missing or out-of-range port, bare IPv6, non-strings', () => {
    assertConfigError(() => parseHostPort('listen', 'localhost'), 'listen', '"localhost"')
    assertConfigError(() => parseHostPort('listen', 'localhost:'), 'listen', '"localhost:"')
    assertConfigError(() => parseHostPort('listen', ':5000'), 'listen', '":5000"')
    assertConfigError(() => parseHostPort('listen', 'host:65536'), 'listen', '"host:65536"')
    assertConfigError(() => parseHostPort('listen', 'host:123456'), 'listen', '"host:123456"')
    assertConfigError(() => parseHostPort('listen', 'host:-1'), 'listen', '"host:-1"')
    assertConfigError(() => parseHostPort('listen', '::1:5000'), 'listen', '"::1:5000"')
    assertConfigError(() => parseHostPort('listen', '[::1]'), 'listen', '"[::1]"')
    assertConfigError(() => parseHostPort('listen', 5000), 'listen', '5000')
    assert.throws(() => parseHostPort('adminListen', 'x'), /adminListen: expected HOST:PORT/)
  })
})

describe('parseUrl', () => {
  test('http and https URLs', () => {
    assert.equal(parseUrl('u', 'https://registry.example.com').href, 'https://registry.example.com/')
    assert.equal(parseUrl('u', 'http://127.0.0.1:5000').href, 'http://127.0.0.1:5000/')
    assert.equal(parseUrl('u', 'https://r.example.com/prefix').pathname, '/prefix')
  })

  test('a bare host gets https://', () => {
    const url = parseUrl('u', 'ghcr.io')
    assert.equal(url.protocol, 'https:')
    assert.equal(url.host, 'ghcr.io')
    assert.equal(parseUrl('u', 'localhost:5000').host, 'localhost:5000')
  })

  test('rejects other schemes, unparsable values and non-strings', () => {
    assertConfigError(() => parseUrl('defaultUpstream', 'ftp://x.example'), 'defaultUpstream', '"ftp://x.example"')
    assertConfigError(
      () => parseUrl('defaultUpstream', 'file:///etc/passwd'),
      'defaultUpstream',
      '"file:///etc/passwd"',
    )
    assertConfigError(() => parseUrl('defaultUpstream', 'not a url'), 'defaultUpstream', '"not a url"')
    assertConfigError(() => parseUrl('defaultUpstream', ''), 'defaultUpstream', '""')
    assertConfigError(() => parseUrl('defaultUpstream', 42), 'defaultUpstream', '42')
    assert.throws(() => parseUrl('defaultUpstream', 'ftp://x'), /expected an http:\/\/ or https:\/\/ URL/)
  })
})

describe('parseBoolean', () => {
  test('booleans and their usual spellings', () => {
    for (const v of [true, 'true', '1', 'yes']) assert.equal(parseBoolean('mdns', v), true)
    for (const v of [false, 'false', '0', 'no']) assert.equal(parseBoolean('mdns', v), false)
  })

  test('rejects anything else', () => {
    assertConfigError(() => parseBoolean('mdns', 'on'), 'mdns', '"on"')
    assertConfigError(() => parseBoolean('mdns', 1), 'mdns', '1')
    assertConfigError(() => parseBoolean('mdns', ''), 'mdns', '""')
    assertConfigError(() => parseBoolean('mdns', null), 'mdns', 'null')
  })
})

describe('parseString', () => {
  test('non-empty strings pass through', () => {
    assert.equal(parseString('dataDir', '/var/lib/shoal'), '/var/lib/shoal')
  })

  test('rejects empty strings and non-strings', () => {
    assertConfigError(() => parseString('dataDir', ''), 'dataDir', '""')
    assertConfigError(() => parseString('dataDir', 5), 'dataDir', '5')
    assertConfigError(() => parseString('dataDir', ['a']), 'dataDir', '["a"]')
  })
})

describe('configError', () => {
  test('names key, expectation and JSON value', () => {
    const err = configError('listen', 'nope', 'HOST:PORT')
    assert.ok(err instanceof ShoalError)
    assert.equal(err.code, 'CONFIG_INVALID')
    assert.equal(err.message, 'config: listen: expected HOST:PORT, got "nope"')
  })

  test('values JSON cannot show fall back to String()', () => {
    assert.equal(configError('k', undefined, 'x').message, 'config: k: expected x, got undefined')
    assert.equal(configError('k', 10n, 'x').message, 'config: k: expected x, got 10')
    const circular: Record<string, unknown> = {}
    circular.self = circular
    assert.equal(configError('k', circular, 'x').message, 'config: k: expected x, got [object Object]')
  })
})
