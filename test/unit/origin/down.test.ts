/**
 * An origin that answers nothing (the connection is dropped at once) costs a request every
 * attempt with backoff once; then, while it counts as down, one attempt per request; any answer
 * ends that. Real undici client against a TCP server on loopback that counts its connections.
 */
import assert from 'node:assert/strict'
import { createServer, type Server, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { ORIGIN_MAX_ATTEMPTS } from '../../../src/constants.js'
import { isShoalError } from '../../../src/errors.js'
import { silentLogger } from '../../../src/log.js'
import { createOriginClient, type OriginClient } from '../../../src/origin/client.js'

describe('origin client: an origin that is down', () => {
  let server: Server
  let connections = 0
  let answer = false
  let client: OriginClient

  before(async () => {
    server = createServer((socket: Socket) => {
      connections++
      if (!answer) {
        socket.destroy()
        return
      }
      socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n'))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const address = server.address()
    assert.ok(address !== null && typeof address === 'object')
    client = createOriginClient(
      {
        defaultUpstream: new URL(`http://127.0.0.1:${address.port}`),
        registries: [],
        backoffBaseMs: 10,
        downMs: 60_000,
      },
      { logger: silentLogger() },
    )
  })

  after(async () => {
    await client.close()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })

  const get = () =>
    client.request(client.upstreamFor(undefined), { method: 'GET', path: '/v2/', scope: 'repository:x:pull' })

  async function unreachable(): Promise<number> {
    const before = connections
    await assert.rejects(get(), (err: unknown) => isShoalError(err, 'UPSTREAM_UNREACHABLE'))
    return connections - before
  }

  it('every attempt first, then one per request while down; an answer ends it', async () => {
    assert.equal(await unreachable(), ORIGIN_MAX_ATTEMPTS, 'the first request retries')
    assert.equal(await unreachable(), 1, 'down: one attempt')
    assert.equal(await unreachable(), 1, 'still down: one attempt')
    answer = true
    const res = await get()
    assert.equal(res.status, 200, 'a request while down still reaches an origin that is back')
    await res.body.dump()
    answer = false
    assert.equal(await unreachable(), ORIGIN_MAX_ATTEMPTS, 'after an answer, every attempt again')
  })
})
