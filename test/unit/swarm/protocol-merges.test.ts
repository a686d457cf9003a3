import assert from 'node:assert/strict'
import { describe, mock, test } from 'node:test'
import type { Peer, PeerData, PeerId, PeerStore } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { SwarmNode } from '../../../src/swarm/node.js'
import { skipRepeatedProtocolMerges } from '../../../src/swarm/protocol-merges.js'
import { removeDir, startSwarmNode, tempDir } from '../../helpers/swarm.js'

const A = peerIdFromString('12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA')
const B = peerIdFromString('12D3KooWEqnTdgqHnkkwarSrJjeMP2ZJiADWLYADaNvUb6SQNyPF')
const OURS = '/shoal/pieces/1.0.0'

/** A store whose merge records what reached it and answers a fresh record each time. */
function recordingStore(): { store: PeerStore; calls: { id: string; data: PeerData }[] } {
  const calls: { id: string; data: PeerData }[] = []
  const store = {
    async merge(id: PeerId, data: PeerData): Promise<Peer> {
      calls.push({ id: id.toString(), data })
      return { id, protocols: [...(data.protocols ?? [])] } as unknown as Peer
    },
  } as unknown as PeerStore
  return { store, calls }
}

describe('repeated protocol merges into the peer store', () => {
  test('the first merge of a lone handled protocol goes through, repeats answer the first record', async () => {
    const { store, calls } = recordingStore()
    skipRepeatedProtocolMerges(store, new Set([OURS]))
    const first = await store.merge(A, { protocols: [OURS] })
    for (let i = 0; i < 5; i++) assert.equal(await store.merge(A, { protocols: [OURS] }), first)
    assert.equal(calls.length, 1)
    // Another peer, another protocol, several protocols, or anything beside the protocol: through.
    await store.merge(B, { protocols: [OURS] })
    await store.merge(A, { protocols: ['/other/1.0.0'] })
    await store.merge(A, { protocols: ['/other/1.0.0'] })
    await store.merge(A, { protocols: [OURS, '/other/1.0.0'] })
    await store.merge(A, { protocols: [OURS], metadata: { k: new Uint8Array([1]) } })
    await store.merge(A, { multiaddrs: [] })
    assert.deepEqual(
      calls.map(
        (c) => `${c.id === A.toString() ? 'A' : 'B'} ${Object.keys(c.data).join(',')} ${c.data.protocols ?? ''}`,
      ),
      [
        `A protocols ${OURS}`,
        `B protocols ${OURS}`,
        'A protocols /other/1.0.0',
        'A protocols /other/1.0.0',
        `A protocols ${OURS},/other/1.0.0`,
        `A protocols,metadata ${OURS}`,
        'A multiaddrs ',
      ],
    )
  })

  test('a merge remembered ten minutes ago goes through again', async () => {
    mock.timers.enable({ apis: ['Date'], now: 1_000_000 })
    try {
      const { store, calls } = recordingStore()
      skipRepeatedProtocolMerges(store, new Set([OURS]))
      await store.merge(A, { protocols: [OURS] })
      mock.timers.tick(9 * 60_000)
      await store.merge(A, { protocols: [OURS] })
      assert.equal(calls.length, 1)
      mock.timers.tick(60_000)
      await store.merge(A, { protocols: [OURS] })
      assert.equal(calls.length, 2)
    } finally {
      mock.timers.reset()
    }
  })

  test('a failed merge is not remembered', async () => {
    let fail = true
    let n = 0
    const store = {
      async merge(id: PeerId): Promise<Peer> {
        n++
        if (fail) throw new Error('datastore down')
        return { id } as unknown as Peer
      },
    } as unknown as PeerStore
    skipRepeatedProtocolMerges(store, new Set([OURS]))
    await assert.rejects(store.merge(A, { protocols: [OURS] }), /datastore down/)
    fail = false
    await store.merge(A, { protocols: [OURS] })
    await store.merge(A, { protocols: [OURS] })
    assert.equal(n, 2)
  })

  test('real libp2p nodes, both handling the protocol: twenty streams open, both peer stores list it', async () => {
    const dir = await tempDir('shsw-merges-')
    const nodes: SwarmNode[] = []
    try {
      for (let i = 0; i < 2; i++) {
        nodes.push(await startSwarmNode(dir, `n${i}`))
      }
      const [a, b] = nodes as [SwarmNode, SwarmNode]
      let served = 0
      await a.handle(OURS, (stream) => stream.abort(new Error('not used')), 64)
      await b.handle(
        OURS,
        (stream) => {
          served++
          stream.close().catch(() => {})
        },
        64,
      )
      await a.libp2p.dial(b.libp2p.getMultiaddrs()[0] as never)
      for (let i = 0; i < 20; i++) {
        const s = await a.dialProtocol(b.peerId, OURS, AbortSignal.timeout(10_000))
        await s.close()
      }
      const deadline = Date.now() + 10_000
      while (served < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
      assert.equal(served, 20)
      assert.ok((await a.libp2p.peerStore.get(b.peerId)).protocols.includes(OURS))
      assert.ok((await b.libp2p.peerStore.get(a.peerId)).protocols.includes(OURS))
    } finally {
      for (const n of nodes) await n.stop()
      await removeDir(dir)
    }
  })
})
