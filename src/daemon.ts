import { join } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import type { DaemonConfig } from './config/config.js'
import { BOOTSTRAP_INTERVAL_MS, GC_INTERVAL_MS } from './constants.js'
import type { Logger } from './log.js'
import { AdminServer } from './metrics/admin.js'
import { Metrics } from './metrics/metrics.js'
import { createOriginClient, type OriginClient, originInitFromConfig } from './origin/client.js'
import { Preheater, type PreheatRequest } from './preheat/preheat.js'
import { createProxy, type ProxyServer } from './proxy/server.js'
import { Resolver } from './resolver/resolver.js'
import { GarbageCollector } from './store/gc.js'
import { type BlobStore, createStore } from './store/store.js'
import type { PieceExchange } from './swarm/exchange.js'
import type { SwarmNode } from './swarm/node.js'
import { BlobService } from './transfer/blobs.js'
import { RateLimiter } from './util/limits.js'

export interface Daemon {
  readonly config: DaemonConfig
  readonly metrics: Metrics
  start(): Promise<void>
  stop(): Promise<void>
  /** The proxy's address, e.g. `http://127.0.0.1:5000`. */
  url(): string
  /** The admin listener's address, when it runs. */
  adminUrl(): string | undefined
  /** The swarm's peer ID and listen addresses, when the swarm runs. */
  swarmInfo(): { peerId: string; addrs: string[] } | undefined
}

export interface DaemonComponents {
  logger: Logger
}

export interface DaemonOptions {
  /** Test-only fault: this daemon flips a byte of every piece it serves to peers. */
  corruptServedPieces?: boolean
  /** Test-only: how long piece sessions of a blob no transfer needs stay without a message. */
  idleSessionsMs?: number | undefined
}

/** Wires the parts together: store → origin → swarm → transfers/resolver → proxy. */
export function createDaemon(config: DaemonConfig, components: DaemonComponents, options: DaemonOptions = {}): Daemon {
  const logger = components.logger
  const metrics = new Metrics()
  const store: BlobStore = createStore({ dataDir: config.dataDir })
  const origin: OriginClient = createOriginClient(originInitFromConfig(config), { logger })
  let exchangeRef: PieceExchange | undefined
  const gcRef: { gc?: GarbageCollector } = {}
  const blobs = new BlobService(
    { originRate: config.originRate, maxOriginRequests: config.maxOriginRequests },
    {
      store,
      origin,
      logger,
      onBytes: (source, bytes) => metrics.addBlobBytes(source, bytes),
      onStored: () => {
        gcRef.gc?.run().catch((err: unknown) => logger.warn({ err: String(err) }, 'garbage collection failed'))
      },
    },
  )
  const gc = new GarbageCollector(
    { dataDir: config.dataDir, quota: config.cacheMax, intervalMs: GC_INTERVAL_MS },
    {
      store,
      logger,
      inUse: (hex) => blobs.inUse(hex),
      onDelete: (digest) => {
        metrics.gcDeleted.inc()
        exchangeRef?.withdraw(digest)
      },
    },
  )
  if (config.cacheMax !== undefined) gcRef.gc = gc
  const resolver = new Resolver({ tagTtlMs: config.tagTtlMs }, { store, origin, logger })
  const proxy: ProxyServer = createProxy(config.listen, { origin, resolver, blobs, logger })
  const preheater = new Preheater({ origin, resolver, blobs, logger })
  let askPeer: ((peer: PeerId, req: PreheatRequest) => Promise<{ accepted: boolean; error: string }>) | undefined

  /** Preheats here, and asks `peers` connected peers (or all) to do the same. */
  const preheat = async (req: PreheatRequest & { peers?: number | 'all' }): Promise<unknown> => {
    const asked: { peer: string; accepted: boolean; error?: string }[] = []
    if (req.peers !== undefined && node !== undefined && askPeer !== undefined) {
      const peers = shuffle(node.connectedPeers())
      const chosen = req.peers === 'all' ? peers : peers.slice(0, req.peers)
      const ask = askPeer
      await Promise.all(
        chosen.map(async (p) => {
          try {
            const r = await ask(p, req)
            asked.push({ peer: p.toString(), accepted: r.accepted, ...(r.error === '' ? {} : { error: r.error }) })
          } catch (err) {
            asked.push({ peer: p.toString(), accepted: false, error: String(err) })
          }
        }),
      )
    }
    const local = await preheater.preheat(req, background.signal)
    return { local, peers: asked }
  }
  let node: SwarmNode | undefined
  let exchange: PieceExchange | undefined
  let admin: AdminServer | undefined
  let started = false
  const background = new AbortController()

  const status = (): unknown => ({
    peerId: node?.peerId.toString(),
    peers: node?.connectedPeers().length ?? 0,
    addrs: node?.libp2p.getMultiaddrs().map((m) => m.toString()) ?? [],
    transfers: blobs.activeTransfers,
    peersBanned: exchange?.stats.peersBanned ?? 0,
    bytesBySource: { ...metrics.bytesBySource },
    cache: gc.lastResult ?? null,
  })

  return {
    config,
    metrics,
    async start() {
      await store.open()
      const swept = await store.sweepOrphans()
      if (swept.files > 0) logger.info(swept, 'removed files a crash left without a record')
      try {
        if (config.swarm.listen.length > 0) {
          // libp2p costs ~55 MiB of memory just loaded: only when the swarm is on.
          const [{ SwarmNode }, { PieceExchange }, { readSwarmKey }] = await Promise.all([
            import('./swarm/node.js'),
            import('./swarm/exchange.js'),
            import('./swarm/identity.js'),
          ])
          const swarmKey = config.swarm.swarmKey === undefined ? undefined : await readSwarmKey(config.swarm.swarmKey)
          node = new SwarmNode(
            {
              listen: config.swarm.listen,
              bootstrap: config.swarm.bootstrap,
              mdns: config.swarm.mdns,
              swarmKey,
              encryption: config.swarm.encryption,
              identityPath: join(config.dataDir, 'identity.key'),
              maxConnections: config.swarm.maxConnections,
              bootstrapIntervalMs: BOOTSTRAP_INTERVAL_MS,
            },
            { logger },
          )
          await node.start()
          exchange = new PieceExchange(
            {
              corruptServedPieces: options.corruptServedPieces === true,
              idleSessionsMs: options.idleSessionsMs,
              uploadLimiter: config.uploadRate === undefined ? undefined : new RateLimiter(config.uploadRate),
            },
            { node, logger, local: (digest) => blobs.local(digest) },
          )
          await exchange.start()
          exchangeRef = exchange
          const { handlePreheat, askPreheat } = await import('./swarm/preheat-protocol.js')
          const n = node
          await handlePreheat(
            node,
            (req, from) => {
              logger.info({ ref: req.ref, from }, 'preheat asked by a peer')
              preheater
                .preheat(req, background.signal)
                .catch((err: unknown) => logger.warn({ ref: req.ref, err: String(err) }, 'preheat failed'))
            },
            logger,
          )
          askPeer = (peer, req) => askPreheat(n, peer, req)
          blobs.setSwarm(exchange)
          const ex = exchange
          ex.provideAll(store.listBlobs(), background.signal)
            .then((n) => logger.info({ blobs: n }, 'announced stored blobs to the swarm'))
            .catch((err: unknown) => logger.warn({ err: String(err) }, 'announcing stored blobs failed'))
        }
        await proxy.start()
        gc.start()
        if (config.adminListen !== undefined) {
          admin = new AdminServer(config.adminListen, {
            metrics,
            logger,
            status,
            preheat,
            gc: async () => {
              const r = await gc.run()
              metrics.gcRuns.inc()
              return r
            },
            ready: async () => ({
              ready: started && (config.swarm.listen.length === 0 || node !== undefined),
              store: started,
              swarm: config.swarm.listen.length === 0 ? 'off' : node !== undefined,
              origin: await origin.reachable(origin.upstreamFor(undefined)),
            }),
            collect: () => {
              metrics.connectedPeers.set(node?.connectedPeers().length ?? 0)
              metrics.activeTransfers.set(blobs.activeTransfers)
              if (exchange !== undefined) {
                metrics.syncPieceBytes({ served: exchange.stats.bytesServed, unwanted: exchange.stats.bytesUnwanted })
                metrics.syncSwarmMessages(exchange.stats.messagesSent, exchange.stats.messagesReceived)
                metrics.syncRequestsDeclined({
                  deferred: exchange.stats.requestsDeferred,
                  redirected: exchange.stats.requestsRedirected,
                })
              }
            },
          })
          await admin.start()
        }
      } catch (err) {
        await exchange?.stop().catch(() => {})
        await node?.stop().catch(() => {})
        await proxy.stop().catch(() => {})
        await store.close()
        throw err
      }
      started = true
      const a = proxy.address()
      logger.info(
        {
          listen: `${a.host}:${a.port}`,
          dataDir: config.dataDir,
          defaultUpstream: config.defaultUpstream.href,
          swarm: node === undefined ? 'off' : node.peerId.toString(),
          // glibc.malloc.hugetlb=1 when the daemon runs on huge pages, and Node's flags with the
          // young generation's size (src/cli/restart.ts).
          glibcTunables: process.env.GLIBC_TUNABLES,
          nodeFlags: process.execArgv.length > 0 ? process.execArgv.join(' ') : undefined,
        },
        'shoal daemon ready',
      )
    },
    async stop() {
      if (!started) return
      started = false
      background.abort()
      gc.stop()
      await blobs.stopAll(5_000)
      await proxy.stop()
      await admin?.stop()
      await exchange?.stop()
      await node?.stop()
      await origin.close()
      await store.close()
      logger.info('shoal daemon stopped')
    },
    url() {
      const a = proxy.address()
      const host = a.host.includes(':') ? `[${a.host}]` : a.host
      return `http://${host}:${a.port}`
    },
    adminUrl() {
      if (admin === undefined) return undefined
      const a = admin.address()
      return `http://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`
    },
    swarmInfo() {
      if (node === undefined) return undefined
      return { peerId: node.peerId.toString(), addrs: node.libp2p.getMultiaddrs().map((m) => m.toString()) }
    },
  }
}

function shuffle<T>(items: T[]): T[] {
  const a = [...items]
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[a[i], a[j]] = [a[j] as T, a[i] as T]
  }
  return a
}
