/**
 * One bootstrap address gives a mesh (real libp2p nodes on loopback): nodes that know only the
 * first one ask the DHT for their closest peers and connect to them — with one DHT lookup per
 * round, not one more per peer found (libp2p's peer routing looks up every closest peer whose
 * addresses the query left out; in a lab of ten that was nine lookups per round per node).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { SwarmNode } from '../../src/swarm/node.js'
import { removeDir, startSwarmNode, tempDir, waitFor } from '../helpers/swarm.js'

const NODES = 5

describe('swarm: neighbours from one bootstrap address (real libp2p)', { timeout: 60_000 }, () => {
  let dir: string | undefined
  const nodes: SwarmNode[] = []
  const lookups: number[] = []

  before(async () => {
    dir = await tempDir('shsw-neighbours-')
    for (let i = 0; i < NODES; i++) {
      const first = nodes[0]?.libp2p.getMultiaddrs()[0]?.toString()
      const node = await startSwarmNode(dir, `n${i}`, first)
      // Every peer lookup libp2p's peer routing makes on this node.
      const routing = node.libp2p.peerRouting
      const findPeer = routing.findPeer.bind(routing)
      lookups[i] = 0
      routing.findPeer = (...args) => {
        lookups[i] = (lookups[i] ?? 0) + 1
        return findPeer(...args)
      }
      nodes.push(node)
    }
  })

  after(async () => {
    for (const n of nodes) await n.stop().catch(() => {})
    await removeDir(dir)
  })

  it('every node connects to every other, without a lookup per peer', async () => {
    await waitFor(
      `each of ${NODES} nodes connected to the ${NODES - 1} others`,
      () => nodes.every((n) => n.connectedPeers().length >= NODES - 1),
      20_000,
      100,
      () => `peers: ${nodes.map((n) => n.connectedPeers().length).join(', ')}`,
    )
    // Past the neighbour rounds at 0.5 s and 3 s after the first connection.
    await new Promise((r) => setTimeout(r, 3_500))
    assert.deepEqual(lookups, new Array(NODES).fill(0), 'no peer lookups')
  })
})

describe('swarm: neighbour rounds wait while a transfer runs (real libp2p)', { timeout: 60_000 }, () => {
  it('no round while busy; the held round runs once the node is idle', async () => {
    const dir = await tempDir('shsw-neighbours-busy-')
    const nodes: SwarmNode[] = []
    try {
      const rounds = [0, 0]
      for (let i = 0; i < 2; i++) {
        const first = nodes[0]?.libp2p.getMultiaddrs()[0]?.toString()
        const node = await startSwarmNode(dir, `n${i}`, first)
        // Every neighbour round is one closest-peer query of the DHT service.
        const dht = (node.libp2p.services as { dht: { getClosestPeers: (...a: unknown[]) => unknown } }).dht
        const query = dht.getClosestPeers.bind(dht)
        dht.getClosestPeers = (...a: unknown[]) => {
          rounds[i] = (rounds[i] ?? 0) + 1
          return query(...a)
        }
        nodes.push(node)
      }
      const [idle, busy] = nodes as [SwarmNode, SwarmNode]
      let transferring = true
      busy.holdNeighbourRoundsWhile(() => transferring)
      await waitFor('connected', () => idle.connectedPeers().length === 1 && busy.connectedPeers().length === 1, 10_000)
      // The first round comes 0.5 s after the first connection.
      await waitFor('the idle node’s first round', () => (rounds[0] ?? 0) >= 1, 5_000, 50)
      await new Promise((r) => setTimeout(r, 1_500))
      assert.equal(rounds[1], 0, 'no round while the node transfers')
      transferring = false
      await waitFor('the held round, once idle', () => (rounds[1] ?? 0) >= 1, 3_000, 50)
    } finally {
      for (const n of nodes) await n.stop().catch(() => {})
      await removeDir(dir)
    }
  })
})
