import { lookup } from 'node:dns/promises'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import type { Libp2p, PeerId, Stream, StreamHandler } from '@libp2p/interface'
import { type KadDHT, kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { mdns } from '@libp2p/mdns'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { tls } from '@libp2p/tls'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import type { Logger } from '../log.js'
import { parseDigest } from '../oci/digest.js'
import { RecentMap } from '../util/recent.js'
import { loadOrCreateIdentity, swarmPrologue } from './identity.js'
import { shoalNoise } from './noise-crypto.js'
import { skipRepeatedProtocolMerges } from './protocol-merges.js'
import { installHalfWindowUpdates } from './yamux-window.js'

export interface SwarmNodeInit {
  listen: string[]
  /** Multiaddrs (with or without /p2p/), or `dns:NAME:PORT` for every A record of NAME. */
  bootstrap: string[]
  mdns: boolean
  swarmKey?: Uint8Array | undefined
  /** Offered in this order; Noise is always among them. */
  encryption: ('noise' | 'tls')[]
  identityPath: string
  maxConnections: number
  /** How often unreachable bootstrap entries are dialled again (and DNS names re-resolved). */
  bootstrapIntervalMs: number
}

/** raw codec, sha2-256 multihash: the OCI digest as a CIDv1, the DHT key of a blob. */
const RAW = 0x55
const SHA2_256 = 0x12
/**
 * After the first connection, the node asks the DHT for its closest peers and connects to them,
 * at these delays and then every NEIGHBOUR_INTERVAL_MS: one bootstrap address then gives a mesh
 * (the DHT's own self-query runs once at start, usually before the bootstrap peer knows anyone).
 */
const NEIGHBOUR_DELAYS_MS = [500, 3_000, 10_000, 30_000]
const NEIGHBOUR_INTERVAL_MS = 10 * 60_000
/**
 * A round that comes due while this node transfers a blob waits (checking this often), this long
 * at most: each round is a DHT query that every peer it reaches answers from its routing table and
 * peer store, ~1 CPU-s over a ten-node herd on two cores, and the rounds after start-up (3, 10,
 * 30 s) landed inside the lab's pulls, which meet their peers through the piece sessions anyway.
 */
const NEIGHBOUR_BUSY_RECHECK_MS = 1_000
const NEIGHBOUR_MAX_WAIT_MS = 60_000
/** Neighbours dialled per search (the DHT returns its k = 20 closest). */
const MAX_NEIGHBOUR_DIALS = 20
/** The DHT's bucket size k (kad-dht's default, which start() keeps): records go to the k closest. */
const DHT_K = 20
/** Addresses per peer taken in or handed out by peer exchange. */
const MAX_EXCHANGED_ADDRS = 8
/**
 * How long a peer's addresses, read from the peer store for peer exchange, are reused. Every new
 * session sends the addresses of the blob's other peers: in a lab of ten nodes pulling a
 * five-blob image, ~40 sessions per node each read eight peers from the peer store (a protobuf
 * decode and a multiaddr parse per address), ~2 % of a small pull's CPU.
 */
const ADDR_CACHE_MS = 10_000
const ADDR_CACHE_MAX = 1024

export function digestToCid(digest: string): CID {
  const d = parseDigest(digest)
  return CID.createV1(RAW, Digest.create(SHA2_256, Buffer.from(d.hex, 'hex')))
}

/**
 * The libp2p node: transports, encryption, muxing, discovery and the DHT. The only place (with
 * the piece protocol beside it) that imports libp2p.
 */
export class SwarmNode {
  private readonly init: SwarmNodeInit
  private readonly log: Logger
  private node: Libp2p | undefined
  private timer: NodeJS.Timeout | undefined
  private neighbourTimer: NodeJS.Timeout | undefined
  private neighbourRound = -1
  /** When the round due now was first held back by a transfer (see NEIGHBOUR_MAX_WAIT_MS). */
  private neighbourHeldSince: number | undefined
  /** True while this node transfers a blob (set by the piece exchange). */
  private busy: () => boolean = () => false
  /** The peers the last whole neighbour round's walk of the DHT ended with (see smallSwarm). */
  private lastWalk: ReadonlySet<string> | undefined
  /** Peer exchange's recent reads of the peer store (see ADDR_CACHE_MS). */
  private readonly addrCache = new RecentMap<Uint8Array<ArrayBuffer>[]>(ADDR_CACHE_MS, ADDR_CACHE_MAX)
  private readonly controller = new AbortController()
  /** Protocols handled here whose repeated peer-store merges are skipped (see protocol-merges). */
  private readonly ownProtocols = new Set<string>()

  constructor(init: SwarmNodeInit, components: { logger: Logger }) {
    this.init = init
    this.log = components.logger.child({ component: 'swarm' })
  }

  get libp2p(): Libp2p {
    if (this.node === undefined) throw new Error('swarm not started')
    return this.node
  }

  get peerId(): PeerId {
    return this.libp2p.peerId
  }

  async start(): Promise<void> {
    const privateKey = await loadOrCreateIdentity(this.init.identityPath)
    if (!installHalfWindowUpdates()) {
      this.log.warn('yamux internals not as src/swarm/yamux-window.ts expects: its own window updates are used')
    }
    const peerDiscovery = this.init.mdns ? [mdns({ interval: 10_000 })] : []
    this.node = await createLibp2p({
      privateKey,
      addresses: { listen: this.init.listen },
      transports: [tcp()],
      connectionEncrypters: this.init.encryption.map((e) =>
        e === 'tls' ? tls() : shoalNoise({ prologueBytes: swarmPrologue(this.init.swarmKey) }),
      ),
      streamMuxers: [yamux()],
      peerDiscovery,
      connectionManager: { maxConnections: this.init.maxConnections },
      // libp2p pings every connection each 10 s and aborts it when a ping misses an adaptive
      // timeout (5 s at least). Behind megabytes of pieces on a busy node a ping can take longer:
      // the abort killed every piece session of the connection (and the claims they carried),
      // which set off duplicate origin fetches in the lab. A peer that cannot answer in 30 s is gone.
      connectionMonitor: {
        pingTimeout: { minTimeout: 30_000, maxTimeout: 120_000 },
        abortConnectionOnPingFailure: false,
      },
      services: {
        identify: identify({ protocolPrefix: 'shoal' }),
        ping: ping({ protocolPrefix: 'shoal' }),
        dht: kadDHT({
          protocol: '/shoal/kad/1.0.0',
          clientMode: false,
          // Fleet addresses are private (pods, LANs): keep them.
          peerInfoMapper: passthroughMapper,
          allowQueryWithZeroPeers: true,
        }),
      },
    })
    skipRepeatedProtocolMerges(this.node.peerStore, this.ownProtocols)
    this.node.addEventListener('peer:discovery', (evt) => {
      const peer = evt.detail
      if (this.node?.getConnections(peer.id).length !== 0) return
      this.node.dial(peer.id, { signal: AbortSignal.timeout(10_000) }).catch((err: unknown) => {
        this.log.debug({ peer: peer.id.toString(), err: String(err) }, 'dial of discovered peer failed')
      })
    })
    this.node.addEventListener('peer:connect', (evt) => {
      this.log.debug({ peer: evt.detail.toString() }, 'peer connected')
      if (this.neighbourRound < 0) {
        this.neighbourRound = 0
        this.scheduleNeighbours()
      }
    })
    await this.node.start()
    this.log.info(
      { peerId: this.node.peerId.toString(), addrs: this.node.getMultiaddrs().map((a) => a.toString()) },
      'swarm started',
    )
    if (this.init.bootstrap.length > 0) this.scheduleBootstrap(0)
  }

  /**
   * Dials the bootstrap list: quickly at first (peers often start together and are not listening
   * yet), then every `bootstrapIntervalMs` to pick up new peers behind a DNS name.
   */
  private scheduleBootstrap(attempt: number): void {
    const delay = attempt === 0 ? 0 : Math.min(this.init.bootstrapIntervalMs, 500 * 2 ** (attempt - 1))
    this.timer = setTimeout(() => {
      this.bootstrapOnce()
        .catch((err: unknown) => this.log.warn({ err: String(err) }, 'bootstrap failed'))
        .finally(() => {
          if (this.controller.signal.aborted) return
          const connected = (this.node?.getPeers().length ?? 0) > 0
          this.scheduleBootstrap(connected ? Math.max(attempt + 1, 8) : attempt + 1)
        })
    }, delay)
    this.timer.unref()
  }

  /** Neighbour rounds wait while `busy()` says a transfer runs here (60 s at most per round). */
  holdNeighbourRoundsWhile(busy: () => boolean): void {
    this.busy = busy
  }

  private scheduleNeighbours(delay = NEIGHBOUR_DELAYS_MS[this.neighbourRound] ?? NEIGHBOUR_INTERVAL_MS): void {
    this.neighbourTimer = setTimeout(() => {
      const now = Date.now()
      this.neighbourHeldSince ??= now
      if (this.busy() && now - this.neighbourHeldSince < NEIGHBOUR_MAX_WAIT_MS) {
        this.log.debug({ round: this.neighbourRound, heldMs: now - this.neighbourHeldSince }, 'neighbour round held')
        this.scheduleNeighbours(NEIGHBOUR_BUSY_RECHECK_MS)
        return
      }
      this.neighbourHeldSince = undefined
      this.meetNeighbours()
        .then((n) => {
          if (n > 0) this.log.debug({ dialled: n, peers: this.node?.getPeers().length }, 'met DHT neighbours')
        })
        .catch((err: unknown) => this.log.debug({ err: String(err) }, 'neighbour search failed'))
        .finally(() => {
          if (this.controller.signal.aborted) return
          this.neighbourRound++
          this.scheduleNeighbours()
        })
    }, delay)
    this.neighbourTimer.unref()
  }

  /**
   * Connects to the peers closest to us in the DHT that we are not connected to yet. Asks the DHT
   * itself, not libp2p's peer routing: that looks up every closest peer whose addresses the query
   * did not return — nearly all, the ones already in our routing table — with a lookup of its
   * own, before the connected ones can be left out (nine lookups per round in a lab of ten
   * nodes, a round landing in the middle of a pull). The dialler finds a peer's addresses in the
   * peer store, and looks a peer up only when none are there.
   */
  async meetNeighbours(): Promise<number> {
    const node = this.libp2p
    const dht = (node.services as { dht?: KadDHT }).dht
    if (dht === undefined) return 0
    const signal = AbortSignal.any([AbortSignal.timeout(15_000), this.controller.signal])
    const found: PeerId[] = []
    const closest = new Set<string>()
    let whole = false
    try {
      for await (const e of dht.getClosestPeers(node.peerId.toMultihash().bytes, { signal })) {
        if (e.name !== 'FINAL_PEER') continue
        const p = e.peer
        if (p.id.equals(node.peerId)) continue
        closest.add(p.id.toString())
        if (node.getConnections(p.id).length > 0) continue
        if (p.multiaddrs.length > 0) await node.peerStore.merge(p.id, { multiaddrs: p.multiaddrs })
        found.push(p.id)
        if (found.length >= MAX_NEIGHBOUR_DIALS) break
      }
      whole = found.length < MAX_NEIGHBOUR_DIALS && !signal.aborted
    } finally {
      // A walk cut short, failed or ended by the signal says nothing of the swarm's size.
      this.lastWalk = whole ? closest : undefined
    }
    let dialled = 0
    await Promise.all(
      found.map(async (id) => {
        if (node.getConnections(id).length > 0) return
        try {
          await node.dial(id, { signal })
          dialled++
        } catch (err) {
          this.log.debug({ peer: id.toString(), err: String(err) }, 'neighbour dial failed')
        }
      }),
    )
    return dialled
  }

  /** Dials every bootstrap address we are not connected to. */
  async bootstrapOnce(): Promise<number> {
    const node = this.libp2p
    const targets: Multiaddr[] = []
    for (const entry of this.init.bootstrap) {
      if (entry.startsWith('dns:')) {
        const m = /^dns:([^:]+):(\d+)$/.exec(entry)
        if (m?.[1] === undefined) continue
        try {
          // lookup (getaddrinfo) reads /etc/hosts too; every address, as a headless Service gives.
          for (const { address } of await lookup(m[1], { all: true, family: 4 })) {
            targets.push(multiaddr(`/ip4/${address}/tcp/${m[2]}`))
          }
        } catch (err) {
          this.log.debug({ name: m[1], err: String(err) }, 'bootstrap name did not resolve')
        }
      } else {
        targets.push(multiaddr(entry))
      }
    }
    const own = new Set(node.getMultiaddrs().map(withoutPeer))
    const connected = new Set(node.getConnections().map((c) => withoutPeer(c.remoteAddr)))
    let dialled = 0
    await Promise.all(
      targets.map(async (ma) => {
        const bare = withoutPeer(ma)
        if (own.has(bare) || connected.has(bare)) return
        const peer = ma.getComponents().find((c) => c.name === 'p2p')?.value
        if (peer === node.peerId.toString()) return
        try {
          await node.dial(ma, { signal: AbortSignal.any([AbortSignal.timeout(10_000), this.controller.signal]) })
          dialled++
        } catch (err) {
          this.log.debug({ addr: ma.toString(), err: String(err) }, 'bootstrap dial failed')
        }
      }),
    )
    return dialled
  }

  async handle(protocol: string, handler: StreamHandler, maxInboundStreams: number): Promise<void> {
    this.ownProtocols.add(protocol)
    await this.libp2p.handle(protocol, handler, { maxInboundStreams, maxOutboundStreams: maxInboundStreams })
  }

  async dialProtocol(peer: PeerId, protocol: string, signal: AbortSignal): Promise<Stream> {
    return this.libp2p.dialProtocol(peer, protocol, { signal })
  }

  /** A peer's known listen addresses (from identify), as multiaddr bytes, for peer exchange. */
  async addressesOf(peer: PeerId): Promise<Uint8Array<ArrayBuffer>[]> {
    const id = peer.toString()
    const cached = this.addrCache.get(id)
    if (cached !== undefined) return cached
    let addrs: Uint8Array<ArrayBuffer>[] = []
    try {
      const p = await this.libp2p.peerStore.get(peer)
      addrs = p.addresses.slice(0, MAX_EXCHANGED_ADDRS).map((a) => new Uint8Array(a.multiaddr.bytes))
    } catch {
      return []
    }
    this.addrCache.set(id, addrs)
    return addrs
  }

  /** The protocols `peer` said it speaks (identify), none when it has not said yet. */
  async protocolsOf(peer: PeerId): Promise<string[]> {
    try {
      return (await this.libp2p.peerStore.get(peer)).protocols
    } catch {
      return []
    }
  }

  /** Records addresses another peer told us about (peer exchange), so that the peer can be dialled. */
  async learnAddresses(peer: PeerId, addrs: Uint8Array[]): Promise<void> {
    const multiaddrs: Multiaddr[] = []
    for (const bytes of addrs.slice(0, MAX_EXCHANGED_ADDRS)) {
      try {
        multiaddrs.push(multiaddr(bytes))
      } catch {
        // not a multiaddr: ignored
      }
    }
    if (multiaddrs.length > 0) await this.libp2p.peerStore.merge(peer, { multiaddrs })
  }

  /** Some connection to `peer` is open (none once this node stopped: a timer may still ask). */
  isConnected(peer: PeerId): boolean {
    return (this.node?.getConnections(peer).length ?? 0) > 0
  }

  connectedPeers(): PeerId[] {
    return this.libp2p.getPeers()
  }

  /**
   * The connected peers, when they are all the swarm there is: the last neighbour round's walk
   * of the DHT found fewer than k peers, this node is connected to each of them, and to fewer than
   * k in all. Else undefined. In a swarm this small every node is among the k closest to every
   * key: a node that announces a blob dials each of them, this one included, to store its record.
   */
  smallSwarm(): PeerId[] | undefined {
    const walk = this.lastWalk
    if (walk === undefined || walk.size >= DHT_K) return undefined
    const peers = this.libp2p.getPeers()
    if (peers.length >= DHT_K) return undefined
    const connected = new Set(peers.map((p) => p.toString()))
    for (const id of walk) if (!connected.has(id)) return undefined
    return peers
  }

  async provide(digest: string, signal: AbortSignal): Promise<void> {
    await this.libp2p.contentRouting.provide(digestToCid(digest), { signal })
  }

  async cancelProvide(digest: string): Promise<void> {
    await this.libp2p.contentRouting.cancelReprovide(digestToCid(digest))
  }

  async *findProviders(digest: string, signal: AbortSignal): AsyncGenerator<PeerId> {
    for await (const p of this.libp2p.contentRouting.findProviders(digestToCid(digest), { signal })) {
      if (!p.id.equals(this.libp2p.peerId)) yield p.id
    }
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer)
    if (this.neighbourTimer !== undefined) clearTimeout(this.neighbourTimer)
    this.controller.abort()
    await this.node?.stop()
    this.node = undefined
  }
}

function withoutPeer(ma: Multiaddr): string {
  return ma
    .getComponents()
    .filter((c) => c.name !== 'p2p')
    .map((c) => `/${c.name}${c.value === undefined ? '' : `/${c.value}`}`)
    .join('')
}
