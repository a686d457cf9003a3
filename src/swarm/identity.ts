import { createHash, randomBytes } from 'node:crypto'
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { ShoalError } from '../errors.js'

/** The node's libp2p identity, kept in the data dir so that its peer ID survives restarts. */
export async function loadOrCreateIdentity(path: string): Promise<PrivateKey> {
  try {
    return privateKeyFromProtobuf(await readFile(path))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ShoalError('CONFIG_INVALID', `cannot read the peer identity in ${path}`, { cause: err })
    }
  }
  const key = await generateKeyPair('Ed25519')
  await mkdir(dirname(path), { recursive: true })
  const tmp = `${path}.${process.pid}.tmp`
  await writeFile(tmp, privateKeyToProtobuf(key), { mode: 0o600 })
  await rename(tmp, path)
  await chmod(path, 0o600)
  return key
}

const KEY_HEADER = '/key/swarm/psk/1.0.0/'

/** A swarm key file in the format of libp2p's pnet (so the same file works for both). */
export function generateSwarmKey(): string {
  return `${KEY_HEADER}\n/base16/\n${randomBytes(32).toString('hex')}\n`
}

export async function readSwarmKey(path: string): Promise<Uint8Array> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new ShoalError('CONFIG_INVALID', `config: swarmKey: cannot read ${path}`, { cause: err })
  }
  const lines = text.trim().split(/\r?\n/)
  if (
    lines.length !== 3 ||
    lines[0] !== KEY_HEADER ||
    lines[1] !== '/base16/' ||
    !/^[0-9a-fA-F]{64}$/.test(lines[2] ?? '')
  ) {
    throw new ShoalError('CONFIG_INVALID', `config: swarmKey: ${path} is not a swarm key (make one with: shoal keygen)`)
  }
  return Buffer.from(lines[2] ?? '', 'hex')
}

/**
 * The Noise prologue for a closed swarm. Both ends mix the prologue into the handshake hash, so
 * a node without the key fails the handshake: membership costs nothing per byte (unlike pnet's
 * stream cipher layered under Noise).
 */
export function swarmPrologue(key: Uint8Array | undefined): Uint8Array {
  const h = createHash('sha256').update('shoal swarm v1\n')
  if (key !== undefined) h.update(key)
  return h.digest()
}
