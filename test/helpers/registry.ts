/**
 * A real origin registry for the end-to-end tests: Debian's docker-registry (distribution 2.8)
 * on 127.0.0.1, filesystem storage in a temp dir, optionally with htpasswd basic auth.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  freePort,
  type Proc,
  readSettled,
  removeTempDir,
  runOk,
  shortTempDir,
  startProcess,
  waitForHttp,
} from './proc.js'

export interface Credentials {
  username: string
  password: string
}

export interface RegistryOptions {
  /** htpasswd (bcrypt) basic auth with this one user. */
  auth?: Credentials
  /** Reuse a port (restart on the same address); default: a free one. */
  port?: number
  /** Reuse a storage dir (restart with the same content); default: a fresh one in the temp dir. */
  storageDir?: string
}

/** One line of docker-registry's access log. */
export interface OriginRequest {
  method: string
  /** Path and query, as requested. */
  path: string
  status: number
  bytes: number
  userAgent: string
}

export interface Registry {
  readonly proc: Proc
  /** `127.0.0.1:PORT` */
  readonly host: string
  readonly port: number
  /** `http://127.0.0.1:PORT` */
  readonly url: string
  readonly dir: string
  readonly storageDir: string
  readonly auth: Credentials | undefined
  /** Every request in its access log so far. */
  requests(): Promise<OriginRequest[]>
  /** Stops the process by PID (the temp dir stays until `cleanup`). */
  stop(): Promise<void>
  /** Stops and removes its temp dir. */
  cleanup(): Promise<void>
}

export const REGISTRY_BIN = '/usr/bin/docker-registry'

/** `127.0.0.1 - - [date] "GET /v2/… HTTP/1.1" 200 3148259 "" "containerd/1.6.20"` */
const ACCESS_LINE = /^\S+ - \S+ \[[^\]]*\] "([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3}) (\d+|-) "[^"]*" "([^"]*)"$/gm

export async function startRegistry(opts: RegistryOptions = {}): Promise<Registry> {
  const dir = await shortTempDir('sh-reg-')
  try {
    const port = opts.port ?? (await freePort())
    const storageDir = opts.storageDir ?? join(dir, 'storage')
    await mkdir(storageDir, { recursive: true })
    const configFile = join(dir, 'config.yml')
    // A minimal config file; the addresses and paths also go in the environment, as the field
    // notes describe, which docker-registry lets override the file.
    const lines = [
      'version: 0.1',
      'log:',
      '  level: info',
      '  accesslog:',
      '    disabled: false',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${storageDir}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '  secret: shoal-e2e-not-a-secret',
    ]
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      REGISTRY_HTTP_ADDR: `127.0.0.1:${port}`,
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: storageDir,
    }
    if (opts.auth !== undefined) {
      const htpasswdFile = join(dir, 'htpasswd')
      const r = await runOk('htpasswd', ['-Bbn', opts.auth.username, opts.auth.password], { timeoutMs: 20_000 })
      await writeFile(htpasswdFile, r.stdout)
      lines.push('auth:', '  htpasswd:', '    realm: shoal-e2e', `    path: ${htpasswdFile}`)
      env.REGISTRY_AUTH = 'htpasswd'
      env.REGISTRY_AUTH_HTPASSWD_REALM = 'shoal-e2e'
      env.REGISTRY_AUTH_HTPASSWD_PATH = htpasswdFile
    }
    await writeFile(configFile, `${lines.join('\n')}\n`)
    const proc = startProcess('docker-registry', REGISTRY_BIN, ['serve', configFile], {
      env,
      logFile: join(dir, 'registry.log'),
    })
    const url = `http://127.0.0.1:${port}`
    try {
      await waitForHttp(`${url}/v2/`, {
        proc,
        timeoutMs: 15_000,
        ready: (s) => s === 200 || (opts.auth !== undefined && s === 401),
      })
    } catch (err) {
      await proc.stop()
      throw err
    }
    const logFile = join(dir, 'registry.log')
    return {
      proc,
      host: `127.0.0.1:${port}`,
      port,
      url,
      dir,
      storageDir,
      auth: opts.auth,
      async requests() {
        const text = await readSettled(logFile)
        const out: OriginRequest[] = []
        for (const m of text.matchAll(ACCESS_LINE)) {
          const [, method, path, status, bytes, userAgent] = m
          if (method === undefined || path === undefined || status === undefined) continue
          out.push({
            method,
            path,
            status: Number(status),
            bytes: bytes === undefined || bytes === '-' ? 0 : Number(bytes),
            userAgent: userAgent ?? '',
          })
        }
        return out
      },
      async stop() {
        await proc.stop()
      },
      async cleanup() {
        await proc.stop()
        await removeTempDir(dir)
      },
    }
  } catch (err) {
    await removeTempDir(dir)
    throw err
  }
}
