import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { ShoalError } from '../../../src/errors.js'
import { sendError } from '../../../src/proxy/errors.js'

interface Answer {
  status: number
  headers: Headers
  text: string
  sent: { status: number; code: string }
}

/** One server for the file; each request answers with the error queued for it. */
let server: Server
let base: string
let next: { err: unknown; head: boolean } | undefined
let lastSent: { status: number; code: string } | undefined

before(async () => {
  server = createServer((_req, res) => {
    const job = next
    next = undefined
    if (job === undefined) {
      res.statusCode = 599
      res.end()
      return
    }
    lastSent = sendError(res, job.err, job.head)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
})

after(async () => {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

async function answer(err: unknown, head = false): Promise<Answer> {
  next = { err, head }
  lastSent = undefined
  const res = await fetch(base, { method: head ? 'HEAD' : 'GET', signal: AbortSignal.timeout(5000) })
  const text = await res.text()
  assert.ok(lastSent !== undefined)
  return { status: res.status, headers: res.headers, text, sent: lastSent }
}

interface OciErrors {
  errors: { code: string; message: string; detail: unknown }[]
}

function body(a: Answer): OciErrors {
  return JSON.parse(a.text) as OciErrors
}

describe('sendError', () => {
  test('the OCI error shape: {errors: [{code, message, detail}]}, JSON with its length', async () => {
    const a = await answer(new ShoalError('BLOB_UNKNOWN', 'blob unknown to registry'))
    assert.equal(a.status, 404)
    assert.deepEqual(body(a), { errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown to registry', detail: null }] })
    assert.equal(a.headers.get('content-type'), 'application/json')
    assert.equal(Number(a.headers.get('content-length')), Buffer.byteLength(a.text))
    assert.deepEqual(a.sent, { status: 404, code: 'BLOB_UNKNOWN' })
  })

  test('default status of each code', async () => {
    const cases: [ConstructorParameters<typeof ShoalError>[0], number, string][] = [
      ['BLOB_UNKNOWN', 404, 'BLOB_UNKNOWN'],
      ['MANIFEST_UNKNOWN', 404, 'MANIFEST_UNKNOWN'],
      ['NAME_UNKNOWN', 404, 'NAME_UNKNOWN'],
      ['NAME_INVALID', 400, 'NAME_INVALID'],
      ['DIGEST_INVALID', 400, 'DIGEST_INVALID'],
      ['UNAUTHORIZED', 401, 'UNAUTHORIZED'],
      ['DENIED', 403, 'DENIED'],
      ['TOOMANYREQUESTS', 429, 'TOOMANYREQUESTS'],
      ['UNSUPPORTED', 405, 'UNSUPPORTED'],
      ['RANGE_INVALID', 416, 'RANGE_INVALID'],
      ['UPSTREAM_UNREACHABLE', 503, 'UNAVAILABLE'],
      ['UPSTREAM_ERROR', 502, 'UNKNOWN'],
      ['CONFIG_INVALID', 500, 'UNKNOWN'],
      ['ABORTED', 500, 'UNKNOWN'],
    ]
    for (const [code, status, ociCode] of cases) {
      const a = await answer(new ShoalError(code, `m-${code}`))
      assert.equal(a.status, status, code)
      assert.deepEqual(body(a).errors, [{ code: ociCode, message: `m-${code}`, detail: null }], code)
      assert.deepEqual(a.sent, { status, code: ociCode })
    }
  })

  test('an explicit status wins over the default', async () => {
    const a = await answer(new ShoalError('DIGEST_INVALID', 'origin sent bad bytes', { status: 502 }))
    assert.equal(a.status, 502)
    assert.equal(body(a).errors[0]?.code, 'DIGEST_INVALID')
  })

  test('relayed headers (WWW-Authenticate, Retry-After) are set', async () => {
    const challenge = 'Bearer realm="https://auth.example/token",service="r",scope="repository:a:pull"'
    const a = await answer(
      new ShoalError('UNAUTHORIZED', 'authentication required', {
        headers: { 'www-authenticate': challenge, 'retry-after': '3' },
      }),
    )
    assert.equal(a.status, 401)
    assert.equal(a.headers.get('www-authenticate'), challenge)
    assert.equal(a.headers.get('retry-after'), '3')
  })

  test('detail is carried', async () => {
    const detail = { name: 'a/b', digest: 'sha256:00' }
    const a = await answer(new ShoalError('MANIFEST_UNKNOWN', 'manifest unknown', { detail }))
    assert.deepEqual(body(a).errors[0]?.detail, detail)
  })

  test('an error that is not a ShoalError is a 500 that leaks nothing', async () => {
    for (const err of [new Error('secret path /etc/shadow'), 'a string', undefined]) {
      const a = await answer(err)
      assert.equal(a.status, 500)
      assert.deepEqual(body(a), { errors: [{ code: 'UNKNOWN', message: 'internal error', detail: null }] })
      assert.equal(a.text.includes('shadow'), false)
    }
  })

  test('HEAD: status and headers, no body', async () => {
    const a = await answer(new ShoalError('BLOB_UNKNOWN', 'blob unknown'), true)
    assert.equal(a.status, 404)
    assert.equal(a.text, '')
    assert.equal(a.headers.get('content-type'), 'application/json')
    const expected = JSON.stringify({ errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown', detail: null }] })
    assert.equal(Number(a.headers.get('content-length')), Buffer.byteLength(expected))
  })

  test('messages with non-ASCII text: content-length counts bytes', async () => {
    const a = await answer(new ShoalError('NAME_INVALID', 'invalid repository name: ä…'))
    assert.equal(Number(a.headers.get('content-length')), Buffer.byteLength(a.text))
    assert.equal(body(a).errors[0]?.message, 'invalid repository name: ä…')
  })
})
