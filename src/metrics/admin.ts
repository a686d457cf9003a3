import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from '../log.js'
import type { Metrics } from './metrics.js'

export interface AdminInit {
  host: string
  port: number
}

export interface AdminComponents {
  metrics: Metrics
  logger: Logger
  /** Refreshes gauges before a scrape. */
  collect?: () => void
  /** Extra status for /status (JSON). */
  status?: () => unknown
  /** POST /preheat with a JSON body {ref, platform?, allPlatforms?, peers?}. */
  preheat?: (req: {
    ref: string
    platform?: string
    allPlatforms?: boolean
    peers?: number | 'all'
  }) => Promise<unknown>
  /** POST /gc: a garbage collection now. */
  gc?: () => Promise<unknown>
  /** Readiness for /readyz: the store is open and the swarm started (the origin is reported only). */
  ready?: () => Promise<{ ready: boolean; [k: string]: unknown }>
}

/**
 * `/metrics` (Prometheus text), `/healthz` (alive), `/readyz` (store open, swarm started),
 * `/status` (JSON): on its own listener, apart from /v2/.
 */
export class AdminServer {
  private server: Server | undefined

  constructor(
    private readonly init: AdminInit,
    private readonly c: AdminComponents,
  ) {}

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]
      if (req.method === 'POST' && path === '/gc' && this.c.gc !== undefined) {
        this.c
          .gc()
          .then((r) => res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify(r)}\n`))
          .catch((err: unknown) => res.writeHead(500).end(`${JSON.stringify({ error: String(err) })}\n`))
        return
      }
      if (req.method === 'POST' && path === '/preheat' && this.c.preheat !== undefined) {
        const preheat = this.c.preheat
        readJson(req, 64 * 1024)
          .then((body) => {
            const b = body as { ref?: unknown; platform?: unknown; allPlatforms?: unknown; peers?: unknown }
            if (typeof b.ref !== 'string') throw new Error('body needs "ref"')
            const r: { ref: string; platform?: string; allPlatforms?: boolean; peers?: number | 'all' } = { ref: b.ref }
            if (typeof b.platform === 'string') r.platform = b.platform
            if (b.allPlatforms === true) r.allPlatforms = true
            if (b.peers === 'all' || (typeof b.peers === 'number' && Number.isInteger(b.peers) && b.peers >= 0)) {
              r.peers = b.peers
            }
            return preheat(r)
          })
          .then((r) => res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify(r)}\n`))
          .catch((err: unknown) =>
            res
              .writeHead(400, { 'content-type': 'application/json' })
              .end(`${JSON.stringify({ error: err instanceof Error ? err.message : String(err) })}\n`),
          )
        return
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end()
        return
      }
      if (path === '/metrics') {
        this.c.collect?.()
        this.c.metrics.registry
          .metrics()
          .then((text) => {
            res.writeHead(200, { 'content-type': this.c.metrics.registry.contentType }).end(text)
          })
          .catch((err: unknown) => {
            this.c.logger.error({ err: String(err) }, 'metrics failed')
            res.writeHead(500).end()
          })
        return
      }
      if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n')
        return
      }
      if (path === '/readyz') {
        const check = this.c.ready ?? (async () => ({ ready: true }))
        check()
          .then((r) => {
            res.writeHead(r.ready ? 200 : 503, { 'content-type': 'application/json' }).end(`${JSON.stringify(r)}\n`)
          })
          .catch((err: unknown) => {
            res
              .writeHead(503, { 'content-type': 'application/json' })
              .end(`${JSON.stringify({ ready: false, error: String(err) })}\n`)
          })
        return
      }
      if (path === '/status') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify(this.c.status?.() ?? {})}\n`)
        return
      }
      res.writeHead(404).end()
    })
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.init.port, this.init.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
  }

  address(): { host: string; port: number } {
    const a = this.server?.address() as AddressInfo | null | undefined
    return { host: this.init.host, port: a?.port ?? this.init.port }
  }

  async stop(): Promise<void> {
    const server = this.server
    this.server = undefined
    if (server === undefined) return
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  }
}

async function readJson(req: IncomingMessage, max: number): Promise<unknown> {
  let size = 0
  const chunks: Buffer[] = []
  for await (const c of req) {
    size += (c as Buffer).length
    if (size > max) throw new Error('body too large')
    chunks.push(c as Buffer)
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown
}
