import type { DaemonConfig } from './config/config.js'
import type { Logger } from './log.js'
import { createOriginClient, type OriginClient, originInitFromConfig } from './origin/client.js'
import { createProxy, type ProxyServer } from './proxy/server.js'
import { Resolver } from './resolver/resolver.js'
import { type BlobStore, createStore } from './store/store.js'
import { BlobService } from './transfer/blobs.js'

export interface Daemon {
  readonly config: DaemonConfig
  start(): Promise<void>
  stop(): Promise<void>
  /** The proxy's address, e.g. `http://127.0.0.1:5000`. */
  url(): string
}

export interface DaemonComponents {
  logger: Logger
}

/** Wires the parts together: store → origin → transfers/resolver → proxy. */
export function createDaemon(config: DaemonConfig, components: DaemonComponents): Daemon {
  const logger = components.logger
  const store: BlobStore = createStore({ dataDir: config.dataDir })
  const origin: OriginClient = createOriginClient(originInitFromConfig(config), { logger })
  const blobs = new BlobService({}, { store, origin, logger })
  const resolver = new Resolver({ tagTtlMs: config.tagTtlMs }, { store, origin, logger })
  const proxy: ProxyServer = createProxy(config.listen, { origin, resolver, blobs, logger })
  let started = false

  return {
    config,
    async start() {
      await store.open()
      try {
        await proxy.start()
      } catch (err) {
        await store.close()
        throw err
      }
      started = true
      const a = proxy.address()
      logger.info(
        { listen: `${a.host}:${a.port}`, dataDir: config.dataDir, defaultUpstream: config.defaultUpstream.href },
        'shoal daemon ready',
      )
    },
    async stop() {
      if (!started) return
      started = false
      blobs.abortAll()
      await proxy.stop()
      await origin.close()
      await store.close()
      logger.info('shoal daemon stopped')
    },
    url() {
      const a = proxy.address()
      const host = a.host.includes(':') ? `[${a.host}]` : a.host
      return `http://${host}:${a.port}`
    },
  }
}
