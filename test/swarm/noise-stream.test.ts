import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Libp2p, Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { noiseLength, onSecured, shoalNoise } from '../../src/swarm/noise-crypto.js'

const PROTOCOL = '/shoal-test/noise-stream/1'
const MiB = 1024 * 1024

/** Writes of awkward sizes, so that Noise messages of every length straddle the socket's reads. */
function pieces(total: number): Buffer[] {
  const sizes = [1, 17, 1199, 1200, 65_519, 65_520, 70_000, 4 * MiB, 300_001]
  const out: Buffer[] = []
  for (let sent = 0, i = 0; sent < total; i++) {
    const n = Math.min(sizes[i % sizes.length] as number, total - sent)
    out.push(randomBytes(n))
    sent += n
  }
  return out
}

async function send(stream: Stream, bufs: Buffer[]): Promise<void> {
  for (const b of bufs) {
    if (!stream.send(b)) await new Promise((r) => stream.addEventListener('drain', r, { once: true }))
  }
}

function receive(stream: Stream, total: number): Promise<string> {
  const hash = createHash('sha256')
  let got = 0
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${got} of ${total} bytes in 60 s`)), 60_000)
    stream.addEventListener('message', (e) => {
      for (const b of e.data instanceof Uint8Array ? [e.data] : e.data) hash.update(b)
      got += e.data.byteLength
      if (got >= total) {
        clearTimeout(timer)
        resolve(hash.digest('hex'))
      }
    })
  })
}

const digest = (bufs: Buffer[]): string => {
  const h = createHash('sha256')
  for (const b of bufs) h.update(b)
  return h.digest('hex')
}

describe('Noise as Shoal runs it: no decrypt copy, lengths without a throw, corked socket writes (real libp2p over TCP)', () => {
  const seen: object[] = []
  let a: Libp2p
  let b: Libp2p

  before(async () => {
    const node = (listen: string[]) =>
      createLibp2p({
        addresses: { listen },
        transports: [tcp()],
        connectionEncrypters: [onSecured(shoalNoise(), (c) => seen.push(c as object))],
        streamMuxers: [yamux()],
      })
    a = await node(['/ip4/127.0.0.1/tcp/0'])
    b = await node([])
  })

  after(async () => {
    await b?.stop()
    await a?.stop()
  })

  test('bytes of every write size arrive whole both ways; both sides use the copy-free decrypt, the quiet lengths and corked writes', async () => {
    const toA = pieces(12 * MiB)
    const toB = pieces(9 * MiB)
    const atA = new Promise<string>((resolve, reject) => {
      a.handle(PROTOCOL, async (stream: Stream) => {
        const got = receive(stream, 12 * MiB)
        await send(stream, toB)
        got.then(resolve, reject)
      }).catch(reject)
    })
    const addr = a.getMultiaddrs()[0]
    assert.ok(addr)
    const stream = await b.dialProtocol(addr, PROTOCOL)
    const atB = receive(stream, 9 * MiB)
    await send(stream, toA)
    assert.equal(await atA, digest(toA))
    assert.equal(await atB, digest(toB))
    assert.equal(seen.length, 2, 'one secured connection on each side')
    for (const c of seen) {
      assert.ok(Object.hasOwn(c, 'decrypt'), "the connection's decrypt is Shoal's")
      const decoder = (c as { decoder?: { lengthDecoder?: unknown } }).decoder
      assert.equal(decoder?.lengthDecoder, noiseLength, "the connection's message lengths are read without a throw")
      const tcpConnection = (c as { stream?: object }).stream
      assert.ok(tcpConnection !== undefined && Object.hasOwn(tcpConnection, 'sendData'), 'the TCP writes are corked')
    }
  })
})
