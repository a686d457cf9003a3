import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, test } from 'node:test'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { LengthPrefixedDecoder } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import { noiseLength, shoalNoiseCrypto } from '../../../src/swarm/noise-crypto.js'

type Bytes = Uint8Array | { subarray(): Uint8Array }
const flat = (b: Bytes): Buffer => Buffer.from(b instanceof Uint8Array ? b : b.subarray())

function nonce(n: number): Uint8Array {
  const out = new Uint8Array(12)
  new DataView(out.buffer).setUint32(4, n, true)
  return out
}

describe("Shoal's Noise cipher (cached keys, no tag copy)", () => {
  const k = randomBytes(32)
  const ad = randomBytes(32)

  test('seals exactly what the default seals, at every size around the native threshold and up to a full message', () => {
    for (const size of [0, 1, 1199, 1200, 1201, 4096, 65_519]) {
      const plain = randomBytes(size)
      const ours = flat(shoalNoiseCrypto.chaCha20Poly1305Encrypt(plain, nonce(size), ad, k))
      const theirs = flat(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce(size), ad, k))
      assert.ok(ours.equals(theirs), `size ${size}`)
      const back = flat(shoalNoiseCrypto.chaCha20Poly1305Decrypt(ours, nonce(size), ad, k))
      assert.ok(back.equals(plain), `round trip ${size}`)
    }
  })

  test('opens a message that arrives in several parts (a list), and the default opens ours', () => {
    const plain = randomBytes(65_519)
    const sealed = flat(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce(7), ad, k))
    const parts = new Uint8ArrayList(sealed.subarray(0, 1000), sealed.subarray(1000, 65_530), sealed.subarray(65_530))
    const opened = shoalNoiseCrypto.chaCha20Poly1305Decrypt(parts as unknown as Uint8Array, nonce(7), ad, k)
    assert.ok(flat(opened).equals(plain))
    const ours = flat(shoalNoiseCrypto.chaCha20Poly1305Encrypt(plain, nonce(8), ad, k))
    assert.ok(flat(defaultCrypto.chaCha20Poly1305Decrypt(ours, nonce(8), ad, k)).equals(plain))
  })

  test('a tampered message, a wrong nonce or a wrong key is refused', () => {
    const plain = randomBytes(8192)
    const sealed = flat(shoalNoiseCrypto.chaCha20Poly1305Encrypt(plain, nonce(1), ad, k))
    const bad = Buffer.from(sealed)
    bad[100] = (bad[100] ?? 0) ^ 1
    assert.throws(() => shoalNoiseCrypto.chaCha20Poly1305Decrypt(bad, nonce(1), ad, k))
    assert.throws(() => shoalNoiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce(2), ad, k))
    assert.throws(() => shoalNoiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce(1), ad, randomBytes(32)))
  })

  test('a key array whose bytes change is not served a stale cached key', () => {
    const key = Uint8Array.from(randomBytes(32))
    const plain = randomBytes(4096)
    const first = flat(shoalNoiseCrypto.chaCha20Poly1305Encrypt(plain, nonce(1), ad, key))
    key[0] = (key[0] ?? 0) ^ 0xff
    const second = flat(shoalNoiseCrypto.chaCha20Poly1305Encrypt(plain, nonce(1), ad, key))
    assert.ok(!first.equals(second))
    assert.ok(second.equals(flat(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce(1), ad, key))))
  })
})

describe("Noise's transport message lengths without a throw per read", () => {
  /** Noise frames: a 2-byte big-endian length, then the message. */
  const frame = (msg: Uint8Array): Uint8Array => {
    const out = new Uint8Array(2 + msg.byteLength)
    out[0] = msg.byteLength >> 8
    out[1] = msg.byteLength & 0xff
    out.set(msg, 2)
    return out
  }

  test('reads the 2-byte length from a buffer or a list; with fewer than 2 bytes it says more than is there', () => {
    assert.equal(noiseLength(Uint8Array.of(0x12, 0x34, 9)), 0x1234)
    assert.equal(noiseLength(new Uint8ArrayList(Uint8Array.of(0xff), Uint8Array.of(0xef, 1))), 0xffef)
    for (const short of [new Uint8Array(0), Uint8Array.of(7), new Uint8ArrayList(Uint8Array.of(7))]) {
      assert.ok(noiseLength(short) + 2 > short.length, 'the decoder waits for more bytes')
    }
  })

  test("the decoder gives the same messages with it as with Noise's throwing decoder, however the bytes are cut", () => {
    const msgs = [randomBytes(1), randomBytes(0x100), randomBytes(51), randomBytes(65_535), randomBytes(1200)]
    const stream = Buffer.concat(msgs.map(frame))
    const throwing = (data: Uint8Array | Uint8ArrayList): number => {
      if (data.length < 2) throw new RangeError('Could not decode int16BE')
      return data instanceof Uint8Array ? (data[0] as number) * 256 + (data[1] as number) : data.getUint16(0)
    }
    for (const cut of [1, 2, 3, 51, 1000, 65_536, stream.byteLength]) {
      const results: string[][] = []
      for (const lengthDecoder of [throwing, noiseLength]) {
        const decoder = new LengthPrefixedDecoder({
          lengthDecoder,
          maxBufferSize: 16 * 1024 * 1024,
          encodingLength: () => 2,
        })
        const got: string[] = []
        for (let at = 0; at < stream.byteLength; at += cut) {
          for (const m of decoder.decode(stream.subarray(at, at + cut)))
            got.push(Buffer.from(m.subarray()).toString('hex'))
        }
        results.push(got)
      }
      assert.deepEqual(results[1], results[0], `cut every ${cut} bytes`)
      assert.deepEqual(
        results[1],
        msgs.map((m) => m.toString('hex')),
        `cut every ${cut} bytes: every message, whole and in order`,
      )
    }
  })
})
