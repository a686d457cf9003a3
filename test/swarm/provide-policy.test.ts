/**
 * When a downloader announces itself in the DHT (real libp2p nodes on loopback): at once while
 * few of its sessions are with peers of the blob's swarm (they could not point anyone to it);
 * otherwise once it holds the blob whole, `provideDelayMs` to twice that after completing; never
 * for a transfer that did not complete, nor for a blob withdrawn meanwhile.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { afterEach, describe, it } from 'node:test'
import { type Digest, parseDigest } from '../../src/oci/digest.js'
import type { ExchangeInit } from '../../src/swarm/exchange.js'
import type { LocalBlob } from '../../src/transfer/contracts.js'
import { ExchangeGroup, type ExchangeNode, FullBlob, PIECE } from '../helpers/exchange.js'
import { waitFor } from '../helpers/swarm.js'

const PIECES = 2

/** Records when `node` announces each digest. */
function spyProvides(node: ExchangeNode): Map<string, number[]> {
  const seen = new Map<string, number[]>()
  const swarmNode = node.node
  const provide = swarmNode.provide.bind(swarmNode)
  swarmNode.provide = async (digest, signal) => {
    seen.set(digest, [...(seen.get(digest) ?? []), Date.now()])
    await provide(digest, signal)
  }
  return seen
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('DHT announcements of a downloader (real libp2p)', () => {
  let group: ExchangeGroup | undefined

  afterEach(async () => {
    await group?.stop()
    group = undefined
  })

  /**
   * A puller connected to a holder of the blob; what the puller holds is `held` (nothing until a
   * test says it completed).
   */
  async function pair(pullerInit: ExchangeInit) {
    group = new ExchangeGroup()
    const data = randomBytes(PIECES * PIECE)
    const digest = parseDigest(`sha256:${createHash('sha256').update(data).digest('hex')}`)
    const blob = new FullBlob(data)
    const state: { held: LocalBlob | undefined } = { held: undefined }
    const holder = await group.start('holder', async (d) => (d.value === digest.value ? blob : undefined))
    const puller = await group.start(
      'puller',
      async (d: Digest) => (d.value === digest.value ? state.held : undefined),
      pullerInit,
    )
    const addr = holder.node.libp2p.getMultiaddrs()[0]
    if (addr === undefined) throw new Error('the holder listens nowhere')
    await puller.node.libp2p.dial(addr)
    await waitFor('both sides connected', () => holder.node.isConnected(puller.node.peerId), 5_000, 10)
    const provides = spyProvides(puller)
    const swarm = group.join(puller, digest, data.length, PIECES)
    const holderSeen = () => swarm.peers().some((p) => p.id === holder.node.peerId.toString() && p.has(0))
    return { digest, blob, state, puller, swarm, provides, holderSeen }
  }

  it('a downloader with few peers of the swarm announces itself at once', async () => {
    // One session with a holder, below the default of four.
    const { digest, provides, holderSeen } = await pair({})
    await waitFor('a session with the holder', holderSeen, 10_000, 20)
    await waitFor('an announcement', () => provides.has(digest.value), 3_000, 20)
  })

  it('a downloader in session with enough of the swarm announces the blob after completing it', async () => {
    const { digest, blob, state, swarm, provides, holderSeen } = await pair({
      provideBelowSessions: 1,
      provideDelayMs: 300,
    })
    await waitFor('a session with the holder', holderSeen, 10_000, 20)
    await sleep(1_500)
    assert.equal(provides.size, 0, 'no announcement while downloading')
    state.held = blob
    const done = Date.now()
    swarm.close()
    await waitFor('an announcement after completion', () => provides.has(digest.value), 3_000, 20)
    const at = provides.get(digest.value)?.[0] ?? 0
    assert.ok(at - done >= 290, `announced ${at - done} ms after completing, not before the delay`)
    await sleep(1_000)
    assert.equal(provides.get(digest.value)?.length, 1, 'announced once')
  })

  it('a transfer that did not complete is not announced, nor a blob withdrawn before its turn', async () => {
    const { digest, blob, state, puller, swarm, provides, holderSeen } = await pair({
      provideBelowSessions: 1,
      provideDelayMs: 300,
    })
    await waitFor('a session with the holder', holderSeen, 10_000, 20)
    // Ended without the blob: nothing held.
    swarm.close()
    await sleep(1_000)
    assert.equal(provides.size, 0, 'nothing announced for a failed transfer')
    // A second transfer completes, and the blob is removed (GC) before the announcement.
    const again = group?.join(puller, digest, blob.size, PIECES)
    await waitFor('a session with the holder again', () => (again?.peers().length ?? 0) > 0, 10_000, 20)
    state.held = blob
    again?.close()
    await sleep(150)
    puller.exchange.withdraw(digest.value)
    await sleep(1_000)
    assert.equal(provides.size, 0, 'a withdrawn blob is not announced')
  })
})
