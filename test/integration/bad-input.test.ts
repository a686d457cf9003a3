/**
 * Hostile and malformed requests: bad names, path traversal, unknown digest algorithms, bad hex,
 * absurd and multiple ranges, write methods, oversized headers, garbage on the socket. Each gets
 * its exact status (with an OCI JSON error body where HTTP allows one), nothing reaches the origin
 * that should not, no file appears outside the data dir, and the daemon keeps answering.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { FakeOrigin } from '../helpers/fake-origin.js'
import { http, listFiles, ociErrorCode, removeDir, type Shoal, sha256, startShoal, tempRoot } from './support.js'

/** Sends raw bytes, returns what came back until the server closed (bounded). */
function raw(base: string, data: string | Buffer, timeoutMs = 5_000): Promise<string> {
  const u = new URL(base)
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const s = connect(Number(u.port), u.hostname)
    const done = (): void => {
      clearTimeout(timer)
      s.destroy()
      resolve(Buffer.concat(chunks).toString('latin1'))
    }
    const timer = setTimeout(done, timeoutMs)
    s.on('data', (c: Buffer) => chunks.push(c))
    s.on('end', done)
    s.on('close', done)
    s.on('error', done)
    s.write(data)
  })
}

describe('bad input', () => {
  let origin: FakeOrigin
  let shoal: Shoal
  let root: string
  const repo = 'bad/input'
  const marker = `shoal-evil-${process.pid}-${Date.now()}`
  let blob: { digest: string; data: Buffer }
  const HEX = 'a'.repeat(64)

  before(async () => {
    origin = await FakeOrigin.start()
    blob = origin.addRandomBlob(repo, 65_536)
    root = await tempRoot()
    shoal = await startShoal({ upstream: origin.url, dataDir: join(root, 'data') })
    // Cache the blob for the range cases.
    const r = await http(shoal.url, `/v2/${repo}/blobs/${blob.digest}`)
    assert.equal(sha256(r.body), blob.digest)
  })

  after(async () => {
    await shoal?.stop()
    await origin?.stop()
    await removeDir(root)
  })

  async function expectError(
    path: string,
    status: number,
    code: string | undefined,
    opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
  ): Promise<void> {
    const r = await http(shoal.url, path, opts)
    const what = `${opts.method ?? 'GET'} ${path.slice(0, 120)}`
    assert.equal(r.status, status, `${what}: status`)
    if (opts.method !== 'HEAD') {
      assert.equal(r.headers['content-type'], 'application/json', `${what}: content-type`)
      const got = ociErrorCode(r.body)
      if (code !== undefined) assert.equal(got, code, `${what}: code`)
    }
  }

  test('malformed repository names: 400 NAME_INVALID', async () => {
    const names = [
      'UPPER/case',
      'a..b',
      '-lead',
      'trail-',
      'a//b',
      'x'.repeat(300),
      'foo%2F..%2Fbar',
      'foo%00bar',
      'caf%C3%A9',
      'a b'.replace(' ', '%20'),
    ]
    for (const name of names) {
      await expectError(`/v2/${name}/manifests/latest`, 400, 'NAME_INVALID')
      await expectError(`/v2/${name}/blobs/sha256:${HEX}`, 400, 'NAME_INVALID')
    }
  })

  test('path traversal is never a file path', async () => {
    const cases: { path: string; status: number; code?: string }[] = [
      { path: `/v2/../../../../tmp/${marker}`, status: 404 },
      { path: `/v2/${repo}/blobs/..%2F..%2F..%2F..%2Ftmp%2F${marker}`, status: 400, code: 'DIGEST_INVALID' },
      { path: `/v2/${repo}/blobs/sha256:..%2F..%2F${marker}`, status: 400, code: 'DIGEST_INVALID' },
      { path: `/v2/${repo}/manifests/..%2F..%2F${marker}`, status: 400, code: 'DIGEST_INVALID' },
      { path: `/v2/${repo}/blobs/sha256:${HEX}/../../../../../tmp/${marker}`, status: 404 },
      { path: `/v2/%2e%2e/%2e%2e/${marker}/manifests/latest`, status: 404 },
      { path: `/v2/${repo}/manifests/%2e%2e`, status: 404 },
    ]
    for (const c of cases) await expectError(c.path, c.status, c.code)
    assert.equal(existsSync(join(tmpdir(), marker)), false)
  })

  test('unknown digest algorithms and bad hex: 400 DIGEST_INVALID', async () => {
    const refs = [
      `sha512:${'a'.repeat(128)}`,
      `md5:${'a'.repeat(32)}`,
      `sha384:${'a'.repeat(96)}`,
      `blake3:${'a'.repeat(64)}`,
      `sha256:${'A'.repeat(64)}`,
      `sha256:${'a'.repeat(63)}`,
      `sha256:${'a'.repeat(65)}`,
      `sha256:${'g'.repeat(64)}`,
      `sha256:${'a'.repeat(62)}%20`,
      'sha256:',
      `SHA256:${HEX}`,
    ]
    for (const ref of refs) {
      await expectError(`/v2/${repo}/blobs/${ref}`, 400, 'DIGEST_INVALID')
      await expectError(`/v2/${repo}/blobs/${ref}`, 400, undefined, { method: 'HEAD' })
      await expectError(`/v2/${repo}/manifests/${ref}`, 400, 'DIGEST_INVALID')
    }
    // None of this reached the origin.
    assert.equal(origin.requestsTo(/sha512|md5|sha384|blake3|SHA256/).length, 0)
  })

  test('ranges: absurd ones are 416 RANGE_INVALID, multi-range and garbage get the whole blob', async () => {
    const path = `/v2/${repo}/blobs/${blob.digest}`
    for (const range of ['bytes=999999999999-', 'bytes=99999999999999999999-', 'bytes=65536-', 'bytes=-0']) {
      const r = await http(shoal.url, path, { headers: { range } })
      assert.equal(r.status, 416, range)
      assert.equal(r.headers['content-range'], 'bytes */65536', range)
      assert.equal(ociErrorCode(r.body), 'RANGE_INVALID', range)
    }
    for (const range of ['bytes=0-1,5-6', 'bytes=0-0,-1', 'bytes=abc', 'items=0-5', 'bytes=--1']) {
      const r = await http(shoal.url, path, { headers: { range } })
      assert.equal(r.status, 200, range)
      assert.equal(r.headers['content-length'], '65536', range)
      assert.equal(sha256(r.body), blob.digest, range)
    }
    const part = await http(shoal.url, path, { headers: { range: 'bytes=10-19' } })
    assert.equal(part.status, 206)
    assert.equal(part.headers['content-range'], 'bytes 10-19/65536')
    assert.deepEqual(part.body, blob.data.subarray(10, 20))
    const suffix = await http(shoal.url, path, { headers: { range: 'bytes=-10' } })
    assert.equal(suffix.status, 206)
    assert.deepEqual(suffix.body, blob.data.subarray(65_526))
    const open = await http(shoal.url, path, { headers: { range: 'bytes=65530-999999999999' } })
    assert.equal(open.status, 206)
    assert.equal(open.headers['content-range'], 'bytes 65530-65535/65536')
    assert.deepEqual(open.body, blob.data.subarray(65_530))
  })

  test('write methods: 405 UNSUPPORTED with Allow, never sent to the origin', async () => {
    const before = origin.requests.length
    const paths = [
      '/v2/',
      `/v2/${repo}/manifests/latest`,
      `/v2/${repo}/blobs/${blob.digest}`,
      `/v2/${repo}/blobs/uploads/`,
      `/v2/${repo}/blobs/uploads/some-uuid`,
    ]
    for (const method of ['PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS']) {
      for (const path of paths) {
        const r = await http(shoal.url, path, { method, body: method === 'DELETE' ? undefined : '{"x":1}' })
        assert.equal(r.status, 405, `${method} ${path}`)
        assert.equal(r.headers.allow, 'GET, HEAD', `${method} ${path}`)
        assert.equal(ociErrorCode(r.body), 'UNSUPPORTED', `${method} ${path}`)
      }
    }
    assert.equal(origin.requests.length, before)
    // The cached blob is still there and intact.
    const r = await http(shoal.url, `/v2/${repo}/blobs/${blob.digest}`)
    assert.equal(sha256(r.body), blob.digest)
  })

  test('oversized request headers: 431', async () => {
    const big = 'a'.repeat(32 * 1024)
    const reply = await raw(
      shoal.url,
      `GET /v2/${repo}/blobs/${blob.digest} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${big}\r\n\r\n`,
    )
    assert.match(reply, /^HTTP\/1\.1 431 /)
    const many = Array.from({ length: 2000 }, (_, i) => `X-H${i}: v`).join('\r\n')
    const reply2 = await raw(shoal.url, `GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n${many}\r\n\r\n`)
    assert.match(reply2, /^HTTP\/1\.1 431 /)
    const longUrl = await raw(shoal.url, `GET /v2/${'a'.repeat(20_000)}/manifests/x HTTP/1.1\r\nHost: x\r\n\r\n`)
    assert.match(longUrl, /^HTTP\/1\.1 431 /)
  })

  test('not HTTP, bad ns, unknown paths: an error, never a crash', async () => {
    const garbage = await raw(shoal.url, 'HELLO\x00\x01\x02 nonsense\r\n\r\n')
    assert.match(garbage, /^HTTP\/1\.1 400 /)
    const ctl = await raw(shoal.url, `GET /v2/${repo}/manifests/\x01 HTTP/1.1\r\nHost: x\r\n\r\n`)
    assert.match(ctl, /^HTTP\/1\.1 400 /)
    await expectError(`/v2/${repo}/manifests/latest?ns=evil/../x`, 400, 'NAME_INVALID')
    await expectError(`/v2/${repo}/manifests/latest?ns=${'a'.repeat(300)}`, 400, 'NAME_INVALID')
    await expectError(`/v2/${repo}/manifests/latest?ns=a%20b`, 400, 'NAME_INVALID')
    await expectError('/', 404, undefined)
    await expectError(`/${marker}`, 404, undefined)
    await expectError(`/v2/${repo}/tags/list`, 404, undefined)
    await expectError(`/v2/${repo}/referrers/sha256:${HEX}`, 404, undefined)
    await expectError('/v2/_catalog', 404, undefined)
  })

  test('afterwards the daemon answers and nothing was written outside the data dir', async () => {
    const ping = await http(shoal.url, '/v2/')
    assert.equal(ping.status, 200)
    const r = await http(shoal.url, `/v2/${repo}/blobs/${blob.digest}`)
    assert.equal(r.status, 200)
    assert.equal(sha256(r.body), blob.digest)
    const files = await listFiles(root)
    for (const f of files) {
      assert.ok(f.startsWith('data/'), `file outside the data dir: ${f}`)
      assert.ok(!f.includes(marker) && !f.includes('..'), `suspicious file: ${f}`)
    }
    const stored = files.filter((f) => f.startsWith('data/blobs/'))
    assert.deepEqual(stored, [`data/blobs/sha256/${blob.digest.slice(7)}`])
    assert.equal(existsSync(join(tmpdir(), marker)), false)
    assert.equal(existsSync(join(process.cwd(), marker)), false)
  })
})
