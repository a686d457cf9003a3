import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'

const CHACHA = 'chacha20-poly1305'
const TAG = 16
/** Below this the WebAssembly cipher of the default is faster than a native cipher object. */
const NATIVE_FROM = 1200

interface CachedKey {
  bytes: Buffer
  key: KeyObject
}

/**
 * Noise bundles its own (older) uint8arraylist; the two versions recognise each other's lists at
 * run time by a global symbol, only their types differ.
 */
type NoiseList = Exclude<ReturnType<ICryptoInterface['chaCha20Poly1305Encrypt']>, Uint8Array>
const asNoiseList = (list: Uint8ArrayList): NoiseList => list as unknown as NoiseList

const keys = new WeakMap<Uint8Array, CachedKey>()

function keyObject(k: Uint8Array): KeyObject {
  const cached = keys.get(k)
  if (cached?.bytes.equals(k)) return cached.key
  const bytes = Buffer.from(k)
  const key = createSecretKey(bytes)
  keys.set(k, { bytes, key })
  return key
}

/**
 * Noise's transport cipher, as the default Node crypto does it but cheaper per message. Every
 * 64 KiB transport message is sealed with a fresh cipher object; given the key as raw bytes,
 * Node imports it into a new key object each time, which cost about as much as encrypting the
 * message. Keys are cached per key array (a Noise CipherState keeps one for its life; the bytes
 * are compared too, so a reused array cannot pick a stale key). Sealing returns the ciphertext
 * and the tag as a list instead of concatenating them into a third buffer.
 */
export const shoalNoiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
    if (plaintext.byteLength < NATIVE_FROM) return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
    const cipher = createCipheriv(CHACHA, keyObject(k), nonce, { authTagLength: TAG })
    cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })
    const out = new Uint8ArrayList()
    if (plaintext instanceof Uint8Array) out.append(cipher.update(plaintext))
    else for (const buf of plaintext) out.append(cipher.update(buf))
    const final = cipher.final()
    if (final.byteLength > 0) out.append(final)
    out.append(cipher.getAuthTag())
    return asNoiseList(out)
  },
  chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst) {
    if (ciphertext.byteLength < NATIVE_FROM) return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst)
    const end = ciphertext.byteLength - TAG
    const decipher = createDecipheriv(CHACHA, keyObject(k), nonce, { authTagLength: TAG })
    decipher.setAAD(ad, { plaintextLength: end })
    decipher.setAuthTag(ciphertext.subarray(end))
    if (ciphertext instanceof Uint8Array) {
      const out = decipher.update(ciphertext.subarray(0, end))
      const final = decipher.final()
      return final.byteLength > 0 ? Buffer.concat([out, final]) : out
    }
    const out = new Uint8ArrayList()
    for (const buf of ciphertext.sublist(0, end)) out.append(decipher.update(buf))
    const final = decipher.final()
    if (final.byteLength > 0) out.append(final)
    return asNoiseList(out)
  },
}
