#!/usr/bin/env node
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
import { isShoalError } from '../errors.js'
import { createLogger } from '../log.js'

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
  .addHelpText(
    'after',
    `
Every option can also come from the environment (SHOAL_LISTEN, SHOAL_DATA_DIR,
SHOAL_DEFAULT_UPSTREAM, SHOAL_LOG_LEVEL, SHOAL_TAG_TTL, SHOAL_DOCKER_CONFIG, SHOAL_ADMIN_LISTEN,
SHOAL_P2P_LISTEN, SHOAL_BOOTSTRAP (comma-separated), SHOAL_MDNS, SHOAL_SWARM_KEY,
SHOAL_MAX_CONNECTIONS) or the config file; flags win over the environment, which wins over the file.

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
    const daemon = createDaemon(config, { logger }, { corruptServedPieces })
    await daemon.start()
    let stopping = false
    const shutdown = (signal: string): void => {
      if (stopping) return
      stopping = true
      logger.info({ signal }, 'shutting down')
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

program.parseAsync(process.argv).catch((err: unknown) => {
  if (isShoalError(err)) {
    process.stderr.write(`shoal: ${err.message}\n`)
  } else {
    process.stderr.write(`shoal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  }
  process.exit(isShoalError(err, 'CONFIG_INVALID') ? 2 : 1)
})
