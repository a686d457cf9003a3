/** Starting the registries under test: docker-registry (origin, plain or proxy mode) and the Shoal daemon. */
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, LOOPBACK, waitForV2 } from './net.js'
import { type Managed, startProcess } from './procs.js'

export interface Server {
  name: string
  base: string
  proc: Managed
  dataDir: string
}

/** docker-registry 2.8 config: filesystem storage under `root`, quiet logs; a pull-through cache with `proxyRemote`. */
export function registryConfig(opts: { addr: string; root: string; proxyRemote?: string }): string {
  const lines = [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  cache:',
    '    blobdescriptor: inmemory',
    '  filesystem:',
    `    rootdirectory: ${JSON.stringify(opts.root)}`,
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: ${opts.addr}`,
  ]
  if (opts.proxyRemote !== undefined) lines.push('proxy:', `  remoteurl: ${JSON.stringify(opts.proxyRemote)}`)
  return `${lines.join('\n')}\n`
}

export const REGISTRY_BIN = process.env.BENCH_REGISTRY_BIN ?? '/usr/bin/docker-registry'

/**
 * docker-registry 2.8 with filesystem storage under `dataDir`, listening on 127.0.0.1 only.
 * With `proxyRemote` it runs as a pull-through cache of that URL.
 */
export async function startRegistry(opts: {
  name: string
  workDir: string
  dataDir: string
  proxyRemote?: string
}): Promise<Server> {
  const port = await freePort()
  await mkdir(opts.dataDir, { recursive: true })
  const configFile = join(opts.workDir, `${opts.name}.yml`)
  await writeFile(
    configFile,
    registryConfig({ addr: `${LOOPBACK}:${port}`, root: opts.dataDir, proxyRemote: opts.proxyRemote }),
  )
  // Only the config file: no REGISTRY_* variables leak in from the caller's environment.
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: opts.workDir }
  const proc = startProcess(opts.name, REGISTRY_BIN, ['serve', configFile], {
    env,
    logFile: join(opts.workDir, `${opts.name}.log`),
  })
  const base = `http://${LOOPBACK}:${port}`
  await waitForV2(base, proc)
  return { name: opts.name, base, proc, dataDir: opts.dataDir }
}

/** dist/src/cli/main.js next to this compiled file (dist/bench/lib/servers.js). */
export const SHOAL_MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))

export interface ShoalServer extends Server {
  /** `http://127.0.0.1:PORT` of the admin listener (/metrics, /status), when asked for. */
  admin?: string
  /** `/ip4/127.0.0.1/tcp/PORT` of the libp2p listener, when the swarm is on. */
  p2pAddr?: string
}

export async function startShoal(opts: {
  name: string
  workDir: string
  dataDir: string
  upstream: string
  logLevel: string
  /** Node binary for the daemon (default: the one running the bench). */
  nodeBin?: string
  /** Turn the swarm on: listen on a free 127.0.0.1 TCP port, dial these peers. */
  swarm?: { bootstrap: string[] }
  /** Open the admin listener on a free port. */
  admin?: boolean
  /** Extra environment, e.g. NODE_OPTIONS. */
  env?: NodeJS.ProcessEnv
}): Promise<ShoalServer> {
  if (!existsSync(SHOAL_MAIN)) throw new Error(`${SHOAL_MAIN} missing: run npm run build`)
  const port = await freePort()
  await mkdir(opts.dataDir, { recursive: true })
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: opts.workDir, ...opts.env }
  // The swarm's encryption is compared by running the bench with SHOAL_P2P_ENCRYPTION set.
  if (process.env.SHOAL_P2P_ENCRYPTION !== undefined) env.SHOAL_P2P_ENCRYPTION = process.env.SHOAL_P2P_ENCRYPTION
  const args = [
    SHOAL_MAIN,
    'daemon',
    '--listen',
    `${LOOPBACK}:${port}`,
    '--data-dir',
    opts.dataDir,
    '--default-upstream',
    opts.upstream,
    '--log-level',
    opts.logLevel,
  ]
  let admin: string | undefined
  if (opts.admin === true) {
    const adminPort = await freePort()
    admin = `http://${LOOPBACK}:${adminPort}`
    args.push('--admin-listen', `${LOOPBACK}:${adminPort}`)
  }
  let p2pAddr: string | undefined
  if (opts.swarm !== undefined) {
    p2pAddr = `/ip4/${LOOPBACK}/tcp/${await freePort()}`
    args.push('--p2p-listen', p2pAddr)
    if (opts.swarm.bootstrap.length > 0) args.push('--bootstrap', ...opts.swarm.bootstrap)
  }
  const proc = startProcess(opts.name, opts.nodeBin ?? process.execPath, args, {
    env,
    logFile: join(opts.workDir, `${opts.name}.log`),
  })
  const base = `http://${LOOPBACK}:${port}`
  await waitForV2(base, proc)
  const server: ShoalServer = { name: opts.name, base, proc, dataDir: opts.dataDir }
  if (admin !== undefined) server.admin = admin
  if (p2pAddr !== undefined) server.p2pAddr = p2pAddr
  return server
}
