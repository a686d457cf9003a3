import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { basicAuth, parseChallenge, TokenCache } from '../../../src/origin/auth.js'

describe('parseChallenge', () => {
  test('Docker Hub bearer challenge', () => {
    const c = parseChallenge(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull"',
    )
    assert.deepEqual(c, {
      scheme: 'bearer',
      params: {
        realm: 'https://auth.docker.io/token',
        service: 'registry.docker.io',
        scope: 'repository:library/ubuntu:pull',
      },
    })
  })

  test('commas and spaces inside quoted values stay in the value', () => {
    const c = parseChallenge(
      'Bearer realm="https://auth.example/token?a=1,b=2",scope="repository:a/b:pull,push repository:c:pull",service="x"',
    )
    assert.deepEqual(c?.params, {
      realm: 'https://auth.example/token?a=1,b=2',
      scope: 'repository:a/b:pull,push repository:c:pull',
      service: 'x',
    })
  })

  test('escaped quotes and backslashes are unescaped', () => {
    const c = parseChallenge('Bearer realm="a\\"b\\\\c",service="s"')
    assert.deepEqual(c?.params, { realm: 'a"b\\c', service: 's' })
  })

  test('whitespace around = and after commas; token (unquoted) values', () => {
    const c = parseChallenge('Bearer   realm = "https://r/token" ,  service=registry.example ,scope=repository:x:pull')
    assert.deepEqual(c?.params, { realm: 'https://r/token', service: 'registry.example', scope: 'repository:x:pull' })
  })

  test('scheme and parameter names are case-insensitive (lowercased)', () => {
    const c = parseChallenge('BEARER Realm="r",SERVICE="s"')
    assert.deepEqual(c, { scheme: 'bearer', params: { realm: 'r', service: 's' } })
  })

  test('Basic challenge, and a scheme without parameters', () => {
    assert.deepEqual(parseChallenge('Basic realm="Registry Realm"'), {
      scheme: 'basic',
      params: { realm: 'Registry Realm' },
    })
    assert.deepEqual(parseChallenge('Basic'), { scheme: 'basic', params: {} })
  })

  test('empty quoted values and error parameters', () => {
    const c = parseChallenge('Bearer realm="r",error="insufficient_scope",scope=""')
    assert.deepEqual(c?.params, { realm: 'r', error: 'insufficient_scope', scope: '' })
  })

  test('only the first challenge is read', () => {
    const c = parseChallenge('Bearer realm="https://a/token",service="a", Basic realm="b"')
    assert.deepEqual(c, { scheme: 'bearer', params: { realm: 'https://a/token', service: 'a' } })
  })

  test('missing or empty headers give undefined', () => {
    assert.equal(parseChallenge(undefined), undefined)
    assert.equal(parseChallenge(''), undefined)
    assert.equal(parseChallenge('   '), undefined)
    assert.equal(parseChallenge('"quoted"'), undefined)
  })
})

describe('TokenCache', () => {
  test('a token is served until it expires, then forgotten', () => {
    const cache = new TokenCache()
    cache.set('reg|repo:a:pull', 'tok', 1000, 10_000)
    assert.equal(cache.get('reg|repo:a:pull', 10_000), 'tok')
    assert.equal(cache.get('reg|repo:a:pull', 10_999), 'tok')
    assert.equal(cache.get('reg|repo:a:pull', 11_000), undefined)
    // Once expired it is gone, even if asked with an earlier clock.
    assert.equal(cache.get('reg|repo:a:pull', 10_000), undefined)
  })

  test('a zero TTL is never served', () => {
    const cache = new TokenCache()
    cache.set('k', 'tok', 0, 5)
    assert.equal(cache.get('k', 5), undefined)
  })

  test('unknown keys give undefined; keys are independent', () => {
    const cache = new TokenCache()
    cache.set('a', 'ta', 1000, 0)
    cache.set('b', 'tb', 1000, 0)
    assert.equal(cache.get('a', 1), 'ta')
    assert.equal(cache.get('b', 1), 'tb')
    assert.equal(cache.get('c', 1), undefined)
  })

  test('setting again replaces the token and its expiry', () => {
    const cache = new TokenCache()
    cache.set('k', 'old', 10, 0)
    cache.set('k', 'new', 1000, 0)
    assert.equal(cache.get('k', 500), 'new')
  })

  test('uses the real clock by default', () => {
    const cache = new TokenCache()
    cache.set('k', 'tok', 60_000)
    assert.equal(cache.get('k'), 'tok')
    cache.set('gone', 'tok', -1)
    assert.equal(cache.get('gone'), undefined)
  })

  test('bounded: the oldest entries go first', () => {
    const cache = new TokenCache(2)
    cache.set('a', 'ta', 1000, 0)
    cache.set('b', 'tb', 1000, 0)
    cache.set('c', 'tc', 1000, 0)
    assert.equal(cache.get('a', 1), undefined)
    assert.equal(cache.get('b', 1), 'tb')
    assert.equal(cache.get('c', 1), 'tc')
  })

  test('re-setting a key makes it the newest', () => {
    const cache = new TokenCache(2)
    cache.set('a', 'ta', 1000, 0)
    cache.set('b', 'tb', 1000, 0)
    cache.set('a', 'ta2', 1000, 0)
    cache.set('c', 'tc', 1000, 0)
    assert.equal(cache.get('a', 1), 'ta2')
    assert.equal(cache.get('b', 1), undefined)
    assert.equal(cache.get('c', 1), 'tc')
  })

  test('the default bound is 1024 entries', () => {
    const cache = new TokenCache()
    for (let i = 0; i < 1025; i++) cache.set(`k${i}`, `t${i}`, 1000, 0)
    assert.equal(cache.get('k0', 1), undefined)
    assert.equal(cache.get('k1', 1), 't1')
    assert.equal(cache.get('k1024', 1), 't1024')
  })
})

describe('basicAuth', () => {
  test('Basic base64(user:password), UTF-8', () => {
    assert.equal(basicAuth('alice', 'secret'), `Basic ${Buffer.from('alice:secret').toString('base64')}`)
    assert.equal(basicAuth('alice', 'se:cr:et'), 'Basic YWxpY2U6c2U6Y3I6ZXQ=')
    assert.equal(basicAuth('jürgen', 'pä'), `Basic ${Buffer.from('jürgen:pä', 'utf8').toString('base64')}`)
  })
})
