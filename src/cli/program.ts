import './v8-flags.js'
import { writeFile } from 'node:fs/promises'
import { Command, Option } from 'commander'
import { envConfig, type RawConfig, readConfigFile, resolveConfig } from '../config/config.js'
import {
  DEFAULT_DATA_DIR,
  DEFAULT_LISTEN,
  DEFAULT_LOG_LEVEL,
  DEFAULT_TAG_TTL_MS,
  DEFAULT_UPSTREAM,
  SHUTDOWN_GRACE_MS,
} from '../constants.js'
import { createDaemon } from '../daemon.js'
import { isShoalError, ShoalError } from '../errors.js'
import { createLogger } from '../log.js'
import { BufferCollector, exposeGc } from '../util/buffer-collector.js'
import { registerConfigure } from './configure.js'
import { registerPull } from './pull.js'

const program = new Command()
program
  .name('shoal')
  .description('Peer-to-peer container image distribution: a node-local OCI registry mirror')
  .version('0.1.0')

program
  .command('daemon')
  .description('run the node-local registry mirror')
  .addOption(new Option('-c, --config <file>', 'YAML config file').env('SHOAL_CONFIG'))
  .option('--listen <host:port>', `address of the /v2/ mirror (default ${DEFAULT_LISTEN})`)
  .option('--data-dir <dir>', `where blobs and metadata live (default ${DEFAULT_DATA_DIR})`)
  .option('--default-upstream <url>', `registry used when a request names none (default ${DEFAULT_UPSTREAM})`)
  .option('--log-level <level>', `fatal, error, warn, info, debug, trace or silent (default ${DEFAULT_LOG_LEVEL})`)
  .option(
    '--tag-ttl <duration>',
    `how long a tag is trusted before revalidation (default ${DEFAULT_TAG_TTL_MS / 1000}s)`,
  )
  .option('--docker-config <file>', 'docker config.json to read registry credentials from')
  .option('--admin-listen <host:port>', 'address of /metrics, /healthz and /status (off by default)')
  .option('--p2p-listen <multiaddr...>', 'libp2p listen address(es), e.g. /ip4/0.0.0.0/tcp/4001 (swarm off when none)')
  .option('--bootstrap <addr...>', 'peers to join: multiaddrs (with or without /p2p/) or dns:NAME:PORT')
  .option('--mdns', 'find peers on the LAN by mDNS')
  .option('--swarm-key <file>', 'closed swarm: only nodes with this key (shoal keygen) can join')
  .option('--max-connections <n>', 'libp2p connections kept at most')
  .option('--p2p-encryption <list>', 'noise (default), tls,noise or noise,tls: offered in that order')
  .option('--cache-max <size|percent>', 'disk quota for the cache, e.g. 50GiB or 80% (LRU by last access)')
  .option('--upload-rate <rate>', 'upload to peers at most this fast, e.g. 50MiB/s')
  .option('--origin-rate <rate>', 'download from origins at most this fast, e.g. 20MiB/s')
  .option('--max-origin-requests <n>', 'blob requests to origins in flight at once')
  .addHelpText(
    'after',
    `
Every option can also come from the environment (SHOAL_LISTEN, SHOAL_DATA_DIR,
SHOAL_DEFAULT_UPSTREAM, SHOAL_LOG_LEVEL, SHOAL_TAG_TTL, SHOAL_DOCKER_CONFIG, SHOAL_ADMIN_LISTEN,
SHOAL_P2P_LISTEN, SHOAL_BOOTSTRAP (comma-separated), SHOAL_MDNS, SHOAL_SWARM_KEY,
SHOAL_MAX_CONNECTIONS, SHOAL_CACHE_MAX, SHOAL_UPLOAD_RATE, SHOAL_ORIGIN_RATE,
SHOAL_MAX_ORIGIN_REQUESTS) or the config file; flags win over the environment, which wins over the file.

Examples:
  $ shoal daemon
  $ shoal daemon --listen 127.0.0.1:5312 --data-dir /tmp/s1 --default-upstream http://127.0.0.1:5311
  $ shoal daemon --config /etc/shoal/config.yaml
  $ shoal daemon --listen 127.0.0.1:5322 --data-dir /tmp/s2 --default-upstream http://127.0.0.1:5311 \\
      --p2p-listen /ip4/127.0.0.1/tcp/4102 --bootstrap /ip4/127.0.0.1/tcp/4101 --admin-listen 127.0.0.1:9322`,
  )
  .action(async (opts: Record<string, string | string[] | boolean | undefined>) => {
    const flags: RawConfig = {
      adminListen: opts.adminListen,
      p2pListen: opts.p2pListen,
      bootstrap: opts.bootstrap,
      mdns: opts.mdns,
      swarmKey: opts.swarmKey,
      maxConnections: opts.maxConnections,
      p2pEncryption: opts.p2pEncryption,
      cacheMax: opts.cacheMax,
      uploadRate: opts.uploadRate,
      originRate: opts.originRate,
      maxOriginRequests: opts.maxOriginRequests,
      listen: opts.listen,
      dataDir: opts.dataDir,
      defaultUpstream: opts.defaultUpstream,
      logLevel: opts.logLevel,
      tagTtl: opts.tagTtl,
      dockerConfig: opts.dockerConfig,
    }
    const file = typeof opts.config === 'string' ? readConfigFile(opts.config) : {}
    const config = resolveConfig({ flags, env: envConfig(process.env), file })
    const logger = createLogger(config.logLevel)
    // Test-only fault switch (see test/integration): a peer that lies about the pieces it serves.
    const corruptServedPieces = process.env.SHOAL_TEST_CORRUPT_PIECES === '1'
    // Test-only: a short idle bound for piece sessions (test/swarm/warm.test.ts).
    const idle = Number(process.env.SHOAL_TEST_IDLE_SESSIONS_MS)
    const idleSessionsMs = Number.isInteger(idle) && idle > 0 ? idle : undefined
    const daemon = createDaemon(config, { logger }, { corruptServedPieces, idleSessionsMs })
    await daemon.start()
    // Dead Buffers collected as they pile up (src/util/buffer-collector.ts); SHOAL_BUFFER_GC=off
    // leaves collections to V8 alone.
    const buffers = new BufferCollector(process.env.SHOAL_BUFFER_GC?.toLowerCase() === 'off' ? undefined : exposeGc())
    buffers.start()
    if (!buffers.available) logger.debug('young-generation collections left to V8 (no gc function)')
    let stopping = false
    const shutdown = (signal: string): void => {
      if (stopping) return
      stopping = true
      logger.info({ signal }, 'shutting down')
      buffers.stop()
      const force = setTimeout(() => {
        logger.error('shutdown took too long; exiting')
        process.exit(1)
      }, SHUTDOWN_GRACE_MS)
      force.unref()
      daemon
        .stop()
        .then(() => process.exit(0))
        .catch((err: unknown) => {
          logger.error({ err: String(err) }, 'shutdown failed')
          process.exit(1)
        })
    }
    process.on('SIGTERM', () => shutdown('SIGTERM'))
    process.on('SIGINT', () => shutdown('SIGINT'))
  })

/** The admin listener of the local daemon: --admin, SHOAL_ADMIN_LISTEN, or the config file. */
function adminAddress(opts: { admin?: string; config?: string }): string {
  const file = opts.config === undefined ? {} : readConfigFile(opts.config)
  const addr = opts.admin ?? process.env.SHOAL_ADMIN_LISTEN ?? (file.adminListen as string | undefined)
  if (addr === undefined) {
    throw new ShoalError(
      'CONFIG_INVALID',
      "no admin address: pass --admin HOST:PORT (the daemon's --admin-listen), set SHOAL_ADMIN_LISTEN, or --config",
    )
  }
  return addr.includes('://') ? addr : `http://${addr}`
}

async function adminCall(base: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
  const { request } = await import('undici')
  let res: Awaited<ReturnType<typeof request>>
  try {
    res = await request(new URL(path, base), {
      method,
      signal: AbortSignal.timeout(30 * 60_000),
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    })
  } catch (err) {
    throw new ShoalError('UPSTREAM_UNREACHABLE', `cannot reach the daemon's admin listener at ${base}: ${String(err)}`)
  }
  const text = await res.body.text()
  if (res.statusCode >= 400) throw new ShoalError('UPSTREAM_ERROR', `${path}: ${res.statusCode} ${text.trim()}`)
  return JSON.parse(text) as unknown
}

program
  .command('status')
  .description("show the local daemon's peers, transfers, bytes by source and cache use")
  .option('--admin <host:port>', "the daemon's admin listener (default: SHOAL_ADMIN_LISTEN or the config file)")
  .option('-c, --config <file>', 'read adminListen from this config file')
  .option('--json', 'print JSON')
  .addHelpText('after', '\nExample:\n  $ shoal status --admin 127.0.0.1:9090')
  .action(async (opts: { admin?: string; config?: string; json?: boolean }) => {
    const s = (await adminCall(adminAddress(opts), 'GET', '/status')) as {
      peerId?: string
      peers: number
      addrs: string[]
      transfers: number
      peersBanned: number
      bytesBySource: Record<string, number>
      cache: { usedBytes: number; quotaBytes?: number | null } | null
    }
    if (opts.json === true) {
      process.stdout.write(`${JSON.stringify(s, null, 2)}\n`)
      return
    }
    const mib = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`
    const lines = [
      `peer id:      ${s.peerId ?? '(swarm off)'}`,
      `addresses:    ${s.addrs.join(' ') || '-'}`,
      `peers:        ${s.peers} connected, ${s.peersBanned} banned`,
      `transfers:    ${s.transfers} in progress`,
      `blob bytes:   origin ${mib(s.bytesBySource.origin ?? 0)}, peers ${mib(s.bytesBySource.peer ?? 0)}, cache ${mib(s.bytesBySource.cache ?? 0)}`,
      `cache:        ${s.cache === null ? 'not measured yet (no quota, or no GC run)' : `${mib(s.cache.usedBytes)} used${s.cache.quotaBytes ? ` of ${mib(s.cache.quotaBytes)}` : ''}`}`,
    ]
    process.stdout.write(`${lines.join('\n')}\n`)
  })

program
  .command('preheat')
  .description("fetch every blob of an image into the local daemon's cache ahead of time (and ask peers to)")
  .argument('<ref>', 'image reference, e.g. registry.example.com/team/app:1.2 or alpine:3')
  .option('--platform <os/arch>', "platform to preheat from a multi-arch image (default: the daemon's)")
  .option('--all-platforms', 'every platform of a multi-arch image')
  .option('--peers <n|all>', 'also ask this many connected peers (or all) to preheat it')
  .option('--admin <host:port>', "the daemon's admin listener (default: SHOAL_ADMIN_LISTEN or the config file)")
  .option('-c, --config <file>', 'read adminListen from this config file')
  .addHelpText(
    'after',
    '\nExamples:\n  $ shoal preheat --admin 127.0.0.1:9090 alpine:3\n  $ shoal preheat --admin 127.0.0.1:9090 --peers all registry.example.com/team/app:1.2',
  )
  .action(
    async (
      ref: string,
      opts: { platform?: string; allPlatforms?: boolean; peers?: string; admin?: string; config?: string },
    ) => {
      const body: Record<string, unknown> = { ref }
      if (opts.platform !== undefined) body.platform = opts.platform
      if (opts.allPlatforms === true) body.allPlatforms = true
      if (opts.peers !== undefined) {
        if (opts.peers !== 'all' && !/^\d+$/.test(opts.peers)) {
          throw new ShoalError('CONFIG_INVALID', `--peers: expected a number or "all", got "${opts.peers}"`)
        }
        body.peers = opts.peers === 'all' ? 'all' : Number(opts.peers)
      }
      const r = (await adminCall(adminAddress(opts), 'POST', '/preheat', body)) as {
        local: { manifests: number; blobs: number; bytes: number; sources: Record<string, number> }
        peers: { peer: string; accepted: boolean; error?: string }[]
      }
      const l = r.local
      process.stdout.write(
        `preheated ${ref}: ${l.manifests} manifests, ${l.blobs} blobs, ${l.bytes} bytes (${Object.entries(l.sources)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')})\n`,
      )
      for (const p of r.peers) {
        process.stdout.write(`peer ${p.peer}: ${p.accepted ? 'accepted' : `refused: ${p.error ?? ''}`}\n`)
      }
    },
  )

program
  .command('gc')
  .description('run garbage collection in the local daemon now (down to its --cache-max)')
  .option('--admin <host:port>', "the daemon's admin listener (default: SHOAL_ADMIN_LISTEN or the config file)")
  .option('-c, --config <file>', 'read adminListen from this config file')
  .addHelpText('after', '\nExample:\n  $ shoal gc --admin 127.0.0.1:9090')
  .action(async (opts: { admin?: string; config?: string }) => {
    const r = (await adminCall(adminAddress(opts), 'POST', '/gc')) as {
      deleted: number
      partialsDeleted?: number
      freedBytes: number
      usedBytes: number
      quotaBytes?: number
    }
    process.stdout.write(
      `deleted ${r.deleted} blobs and ${r.partialsDeleted ?? 0} partial downloads, freed ${r.freedBytes} bytes; cache ${r.usedBytes} bytes${r.quotaBytes === undefined ? ' (no quota)' : ` of ${r.quotaBytes}`}\n`,
    )
  })

program
  .command('keygen')
  .description('print a new swarm key (give the same file to every node with --swarm-key)')
  .option('-o, --output <file>', 'write it to this file (mode 0600) instead of stdout')
  .addHelpText('after', '\nExample:\n  $ shoal keygen -o /etc/shoal/swarm.key')
  .action(async (opts: { output?: string }) => {
    const { generateSwarmKey } = await import('../swarm/identity.js')
    const key = generateSwarmKey()
    if (opts.output === undefined) process.stdout.write(key)
    else await writeFile(opts.output, key, { mode: 0o600, flag: 'wx' })
  })

registerPull(program)
registerConfigure(program)

program.parseAsync(process.argv).catch((err: unknown) => {
  if (isShoalError(err)) {
    process.stderr.write(`shoal: ${err.message}\n`)
  } else {
    process.stderr.write(`shoal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  }
  process.exit(isShoalError(err, 'CONFIG_INVALID') ? 2 : 1)
})
