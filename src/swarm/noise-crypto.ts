import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto'
import {
  type ICryptoInterface,
  type NoiseComponents,
  type NoiseExtensions,
  type NoiseInit,
  noise,
} from '@chainsafe/libp2p-noise'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import type { ConnectionEncrypter } from '@libp2p/interface'
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

/** A Noise transport message at most: 65535 bytes of ciphertext and tag (its 2-byte length apart). */
const NOISE_MSG_MAX = 65535
interface NoiseStreamInternals {
  handshake: { decrypt(ciphertext: Uint8Array | Uint8ArrayList, dst?: Uint8Array): Uint8Array | Uint8ArrayList }
  metrics?: { decryptedPackets: { increment(): void }; decryptErrors: { increment(): void } }
  decrypt(chunk: Uint8Array | Uint8ArrayList): Uint8ArrayList
}

/**
 * Noise's per-message decrypt without its wasted copy. For every transport message Noise builds a
 * `dst` view for the cipher to write into — `chunk.subarray(…)`, which for a message that spans
 * two socket reads (nearly all of them: a message is 64 KiB + 2 bytes, a TCP read 64 KiB) is a
 * fresh 64 KiB concatenation. Node's cipher never writes into it (it allocates its output), so
 * the copy was pure cost (a receiving daemon's CPU in the p2p bench: ~3 % less without it). Here `dst` is only made for the small
 * messages that the WebAssembly cipher decrypts in place, where the view is free or tiny.
 * Same framing, same checks, same errors.
 */
function decryptWithoutCopy(this: NoiseStreamInternals, chunk: Uint8Array | Uint8ArrayList): Uint8ArrayList {
  const output = new Uint8ArrayList()
  for (let i = 0; i < chunk.byteLength; i += NOISE_MSG_MAX) {
    const end = Math.min(i + NOISE_MSG_MAX, chunk.byteLength)
    if (end - TAG < i) throw new Error('Invalid chunk')
    const encrypted = chunk instanceof Uint8Array ? chunk.subarray(i, end) : chunk.sublist(i, end)
    const dst = end - i < NATIVE_FROM ? chunk.subarray(i, end - TAG) : undefined
    try {
      output.append(this.handshake.decrypt(encrypted, dst))
      this.metrics?.decryptedPackets.increment()
    } catch (e) {
      this.metrics?.decryptErrors.increment()
      throw e
    }
  }
  return output
}

/**
 * Put `decryptWithoutCopy` on a secured Noise connection. Noise's stream calls `this.decrypt`
 * for every message, so an own property replaces the prototype's for this connection only.
 * Anything that does not look like Noise's stream is left as it is (a Noise upgrade that changes
 * its internals then costs the copy again, nothing else).
 */
export function withoutDecryptCopy<T>(connection: T): T {
  const c = connection as unknown as Partial<NoiseStreamInternals>
  if (typeof c.decrypt === 'function' && typeof c.handshake?.decrypt === 'function') {
    Object.defineProperty(c, 'decrypt', { value: decryptWithoutCopy, configurable: true, writable: true })
  }
  return connection
}

/** The length-prefix decoder a Noise stream reads its transport messages with. */
interface NoiseDecoderInternals {
  decoder?: { lengthDecoder?: (data: Uint8Array | Uint8ArrayList) => number }
}

/**
 * A message's 2-byte length, or — with fewer than 2 bytes buffered — a length longer than the
 * buffer, which tells the decoder to wait for more bytes. Noise's own length decoder throws a
 * RangeError there, which the decoder catches as its "wait for more": once per socket read, as
 * every read ends on a message boundary or inside one (~5 700 throws per daemon in a lab P1, about
 * 12 µs of CPU each on that loaded machine with the stack trace each one captures).
 */
export function noiseLength(data: Uint8Array | Uint8ArrayList): number {
  if (data.length < 2) return NOISE_MSG_MAX
  return data instanceof Uint8Array ? ((data[0] as number) << 8) | (data[1] as number) : data.getUint16(0)
}

/**
 * Put `noiseLength` on a secured Noise connection's decoder. Its decoder loop breaks when a message
 * is longer than what is buffered, so a stand-in length above the buffer's (< 2 bytes) waits as
 * the RangeError did. Anything that does not look like Noise's stream is left as it is.
 */
export function withQuietLengths<T>(connection: T): T {
  const decoder = (connection as Partial<NoiseDecoderInternals>).decoder
  if (decoder !== undefined && typeof decoder.lengthDecoder === 'function') decoder.lengthDecoder = noiseLength
  return connection
}

/** The TCP connection under a Noise stream, as @libp2p/tcp builds it. */
interface SocketConnection {
  socket: {
    cork(): void
    uncork(): void
    write(buf: Uint8Array): boolean
    readonly writableLength: number
    readonly writableHighWaterMark: number
  }
  sendData(data: Uint8ArrayList): { sentBytes: number; canSendMore: boolean }
}

/**
 * One system call per send instead of one per buffer. Noise hands the TCP connection each
 * transport message as three buffers (its 2-byte length, the ciphertext, the tag), and
 * @libp2p/tcp writes every buffer on its own: three `write()` calls per 64 KiB message, two of
 * them tiny, and two per control frame (a yamux window update, a Have). Corked, the buffers of
 * one send leave as a single `writev`. The result reports the same backpressure `write()` would.
 */
function sendDataCorked(this: SocketConnection, data: Uint8ArrayList): { sentBytes: number; canSendMore: boolean } {
  const socket = this.socket
  let sentBytes = 0
  socket.cork()
  try {
    for (const buf of data) {
      socket.write(buf)
      sentBytes += buf.byteLength
    }
  } finally {
    socket.uncork()
  }
  return { sentBytes, canSendMore: socket.writableLength < socket.writableHighWaterMark }
}

/**
 * Put `sendDataCorked` on the TCP connection under a secured Noise connection (an own property,
 * as `withoutDecryptCopy`). Anything else — another transport, other internals — is left alone.
 */
export function withCorkedWrites<T>(connection: T): T {
  const raw = (connection as { stream?: Partial<SocketConnection> }).stream
  const socket = raw?.socket
  if (
    raw !== undefined &&
    typeof raw.sendData === 'function' &&
    typeof socket?.cork === 'function' &&
    typeof socket.uncork === 'function' &&
    typeof socket.writableHighWaterMark === 'number'
  ) {
    Object.defineProperty(raw, 'sendData', { value: sendDataCorked, configurable: true, writable: true })
  }
  return connection
}

type EncrypterFactory = (components: NoiseComponents) => ConnectionEncrypter<NoiseExtensions>

/** `make`'s encrypters, with `each` called on every connection they secure (both directions). */
export function onSecured(make: EncrypterFactory, each: (connection: unknown) => void): EncrypterFactory {
  return (components) => {
    const encrypter = make(components)
    const inbound = encrypter.secureInbound.bind(encrypter)
    const outbound = encrypter.secureOutbound.bind(encrypter)
    encrypter.secureInbound = async (...args) => {
      const secured = await inbound(...args)
      each(secured.connection)
      return secured
    }
    encrypter.secureOutbound = async (...args) => {
      const secured = await outbound(...args)
      each(secured.connection)
      return secured
    }
    return encrypter
  }
}

/**
 * Noise as libp2p takes it, with Shoal's cipher, `withoutDecryptCopy`, `withQuietLengths` and
 * `withCorkedWrites` on every connection.
 */
export function shoalNoise(init: NoiseInit = {}): EncrypterFactory {
  return onSecured(noise({ ...init, crypto: shoalNoiseCrypto }), (connection) =>
    withCorkedWrites(withQuietLengths(withoutDecryptCopy(connection))),
  )
}
