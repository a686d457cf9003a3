import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, test } from 'node:test'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { shoalNoiseCrypto } from '../../../src/swarm/noise-crypto.js'

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
