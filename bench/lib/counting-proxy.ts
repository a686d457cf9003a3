/** Main-thread handle of the counting TCP proxy (see counting-proxy-worker.ts). */
import { setTimeout as sleep } from 'node:timers/promises'
import { Worker } from 'node:worker_threads'

export const COUNTER = { down: 0, up: 1, connections: 2, open: 3, lastDataAt: 4 } as const

export interface ProxyWorkerData {
  targetHost: string
  targetPort: number
  counters: SharedArrayBuffer
}

export interface ProxyCounts {
  /** Bytes the origin sent towards the mirror (headers included). */
  down: number
  /** Bytes the mirror sent to the origin. */
  up: number
  connections: number
  open: number
  /** Date.now() when the last byte moved in either direction (0: never). */
  lastDataAt: number
}

export interface CountingProxy {
  port: number
  url: string
  counts(): ProxyCounts
  /** Waits until no byte has moved for `quietMs` (bounded by `maxMs`); returns the counts then. */
  settle(quietMs: number, maxMs: number): Promise<ProxyCounts & { settled: boolean }>
  close(): Promise<void>
}

export async function startCountingProxy(target: URL): Promise<CountingProxy> {
  const counters = new SharedArrayBuffer(8 * 5)
  const view = new BigInt64Array(counters)
  const data: ProxyWorkerData = {
    targetHost: target.hostname,
    targetPort: Number(target.port || 80),
    counters,
  }
  const worker = new Worker(new URL('./counting-proxy-worker.js', import.meta.url), { workerData: data })
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('counting proxy did not start within 10 s')), 10_000)
    worker.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    worker.on('message', (msg: { type: string; port?: number; message?: string }) => {
      if (msg.type === 'listening' && msg.port !== undefined) {
        clearTimeout(timer)
        resolve(msg.port)
      } else if (msg.type === 'error') {
        clearTimeout(timer)
        reject(new Error(`counting proxy: ${msg.message}`))
      }
    })
  })
  const counts = (): ProxyCounts => ({
    down: Number(Atomics.load(view, COUNTER.down)),
    up: Number(Atomics.load(view, COUNTER.up)),
    connections: Number(Atomics.load(view, COUNTER.connections)),
    open: Number(Atomics.load(view, COUNTER.open)),
    lastDataAt: Number(Atomics.load(view, COUNTER.lastDataAt)),
  })
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    counts,
    async settle(quietMs, maxMs) {
      const started = performance.now()
      let last = counts()
      let quietSince = performance.now()
      while (performance.now() - started < maxMs) {
        await sleep(100)
        const now = counts()
        if (now.down !== last.down || now.up !== last.up) {
          last = now
          quietSince = performance.now()
        } else if (performance.now() - quietSince >= quietMs) {
          return { ...now, settled: true }
        }
      }
      return { ...counts(), settled: false }
    },
    async close() {
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
      worker.postMessage('close')
      const done = await Promise.race([exited.then(() => true), sleep(3000).then(() => false)])
      if (!done) await worker.terminate()
    },
  }
}
