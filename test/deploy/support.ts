/** Paths, the Node that runs the CLI, and small process helpers for the deployment tests. */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createServer as createHttpServer, request } from 'node:http'
import { createServer } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository (tests run from dist/test/deploy). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
export const CLI = join(ROOT, 'dist/src/cli/main.js')

/**
 * The Node for the CLI: the one running the tests when it is 24 or newer (as under `npm test`),
 * else the project's own Node 24 (the `node` devDependency), since the daemon's libraries need it.
 */
export const NODE =
  Number(process.versions.node.split('.')[0]) >= 24 || !existsSync(join(ROOT, 'node_modules/node/bin/node'))
    ? process.execPath
    : join(ROOT, 'node_modules/node/bin/node')

export interface CliResult {
  status: number | null
  stdout: string
  stderr: string
}

/** Runs the built CLI to completion (bounded). */
export function cli(args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 15_000): CliResult {
  const r = spawnSync(NODE, [CLI, ...args], { env, encoding: 'utf8', timeout: timeoutMs })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** A port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer()
    srv.once('error', fail)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      srv.close(() => (port > 0 ? ok(port) : fail(new Error('no port'))))
    })
  })
}

/** Status and body of one GET, or undefined when the connection failed. */
export function get(url: string, timeoutMs = 5_000): Promise<{ status: number; body: string } | undefined> {
  return new Promise((ok) => {
    const req = request(url, { agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        body += c
      })
      res.on('end', () => ok({ status: res.statusCode ?? 0, body }))
      res.on('error', () => ok(undefined))
    })
    req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')))
    req.on('error', () => ok(undefined))
    req.end()
  })
}

export interface Daemon {
  output(): string
  /** SIGTERM, then the exit code (SIGKILL after the bound). */
  stop(timeoutMs?: number): Promise<number | null>
}

/** Starts `shoal daemon` with this environment (and no flags). */
export function startDaemon(env: NodeJS.ProcessEnv): Daemon {
  const child = spawn(NODE, [CLI, 'daemon'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const keep = (c: Buffer): void => {
    out = (out + c.toString('utf8')).slice(-64 * 1024)
  }
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)))
  const killOnExit = (): void => {
    if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
  }
  process.once('exit', killOnExit)
  return {
    output: () => out,
    stop: async (timeoutMs = 12_000) => {
      if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGTERM')
      const timer = setTimeout(() => {
        if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
      }, timeoutMs)
      const code = await exited
      clearTimeout(timer)
      process.off('exit', killOnExit)
      return code
    },
  }
}

/** A stand-in default upstream on loopback: `GET /v2/` → 200, anything else → 404. */
export async function startOrigin(): Promise<{ url: string; close(): Promise<void> }> {
  const server = createHttpServer((req, res) => {
    res.writeHead(req.url === '/v2/' ? 200 : 404, { 'content-type': 'application/json' }).end('{}')
  })
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok))
  const addr = server.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((ok) => {
        server.close(() => ok())
        server.closeAllConnections()
      }),
  }
}
