/**
 * The Shoal daemon as a subprocess (`node dist/src/cli/main.js daemon --config FILE …`), as an
 * operator runs it: a config YAML written from an object, a data dir in a temp dir, ready when
 * `GET /v2/` answers 200, stopped by PID. Its JSON-lines log goes to a file the tests can read.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { stringify } from 'yaml'
import { freePort, type Proc, readSettled, removeTempDir, shortTempDir, startProcess, waitForHttp } from './proc.js'

/** dist/test/helpers/shoal.js → dist/src/cli/main.js */
export const SHOAL_MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))

export interface ShoalRegistryEntry {
  host: string
  url: string
  username?: string
  password?: string
  caFile?: string
  insecure?: boolean
}

export interface ShoalOptions {
  /** `--default-upstream` (skopeo and podman send no `?ns=`). */
  defaultUpstream: string
  registries?: ShoalRegistryEntry[]
  tagTtl?: string
  logLevel?: string
  /** Reuse a data dir (restart with a warm cache); default: `<tempdir>/data`. */
  dataDir?: string
  /** Reuse a port; default: a free one. */
  port?: number
  /** More config file keys. */
  extraConfig?: Record<string, unknown>
  extraArgs?: string[]
  env?: NodeJS.ProcessEnv
  /**
   * Which `/v2/` statuses mean ready (default 200). A Shoal without credentials in front of an
   * origin that wants them relays the origin's 401 there.
   */
  ready?: (status: number) => boolean
}

/** One line of the daemon's request log. */
export interface RequestLogLine {
  method: string
  url: string
  status: number
  code?: string
}

export interface Shoal {
  readonly proc: Proc
  readonly port: number
  /** `127.0.0.1:PORT` */
  readonly host: string
  /** `http://127.0.0.1:PORT` */
  readonly url: string
  readonly dir: string
  readonly dataDir: string
  readonly configFile: string
  readonly logFile: string
  /** Every JSON line logged so far (lines that are not JSON are skipped). */
  logLines(): Promise<Record<string, unknown>[]>
  /** The `request` lines logged so far. */
  requests(): Promise<RequestLogLine[]>
  stop(): Promise<void>
  /** Stops and removes its temp dir (unless the data dir was given by the caller). */
  cleanup(): Promise<void>
}

export async function startShoal(opts: ShoalOptions): Promise<Shoal> {
  const dir = await shortTempDir('sh-shoal-')
  const port = opts.port ?? (await freePort())
  const dataDir = opts.dataDir ?? join(dir, 'data')
  const config: Record<string, unknown> = {
    listen: `127.0.0.1:${port}`,
    dataDir,
    defaultUpstream: opts.defaultUpstream,
    logLevel: opts.logLevel ?? 'info',
    ...(opts.tagTtl === undefined ? {} : { tagTtl: opts.tagTtl }),
    ...(opts.registries === undefined ? {} : { registries: opts.registries }),
    ...opts.extraConfig,
  }
  const configFile = join(dir, 'config.yaml')
  await writeFile(configFile, stringify(config))
  const logFile = join(dir, 'shoal.log')
  const args = [
    SHOAL_MAIN,
    'daemon',
    '--config',
    configFile,
    '--listen',
    `127.0.0.1:${port}`,
    '--data-dir',
    dataDir,
    '--default-upstream',
    opts.defaultUpstream,
    ...(opts.extraArgs ?? []),
  ]
  // No SHOAL_* variable of the environment leaks in; no proxy either (loopback only).
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: dir,
    NODE_ENV: 'test',
    ...opts.env,
  }
  const proc = startProcess('shoal', process.execPath, args, { env, logFile })
  const url = `http://127.0.0.1:${port}`
  try {
    await waitForHttp(`${url}/v2/`, { proc, timeoutMs: 15_000, ready: opts.ready ?? ((s) => s === 200) })
  } catch (err) {
    await proc.stop()
    if (opts.dataDir === undefined) await removeTempDir(dir)
    throw err
  }
  const logLines = async (): Promise<Record<string, unknown>[]> => {
    const text = await readSettled(logFile)
    const out: Record<string, unknown>[] = []
    for (const line of text.split('\n')) {
      if (!line.startsWith('{')) continue
      try {
        out.push(JSON.parse(line) as Record<string, unknown>)
      } catch {
        // a line cut by a crash
      }
    }
    return out
  }
  return {
    proc,
    port,
    host: `127.0.0.1:${port}`,
    url,
    dir,
    dataDir,
    configFile,
    logFile,
    logLines,
    async requests() {
      const lines = await logLines()
      const out: RequestLogLine[] = []
      for (const l of lines) {
        if (l.msg !== 'request' || typeof l.url !== 'string' || typeof l.status !== 'number') continue
        const entry: RequestLogLine = { method: String(l.method), url: l.url, status: l.status }
        if (typeof l.code === 'string') entry.code = l.code
        out.push(entry)
      }
      return out
    },
    async stop() {
      await proc.stop(10_000)
    },
    async cleanup() {
      await proc.stop(10_000)
      await removeTempDir(dir)
    },
  }
}
