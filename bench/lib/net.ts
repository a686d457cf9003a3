import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import type { Managed } from './procs.js'
import { tailLog } from './procs.js'

export const LOOPBACK = '127.0.0.1'

/** A port that was free on 127.0.0.1 a moment ago (the kernel picks it). */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, LOOPBACK, () => resolve())
  })
  const addr = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (addr === null || typeof addr === 'string') throw new Error('no port')
  return addr.port
}

/** Polls `GET base/v2/` every 50 ms until 200, bounded by `timeoutMs`; fails early if the process exits. */
export async function waitForV2(base: string, proc: Managed, timeoutMs = 15_000): Promise<number> {
  const started = performance.now()
  let last = 'no answer'
  while (performance.now() - started < timeoutMs) {
    if (proc.hasExited()) {
      throw new Error(`${proc.name} exited (${await proc.exited}) before answering /v2/:\n${tailLog(proc)}`)
    }
    try {
      const res = await request(`${base}/v2/`, { signal: AbortSignal.timeout(2000) })
      await res.body.dump()
      if (res.statusCode === 200) return performance.now() - started
      last = `status ${res.statusCode}`
    } catch (err) {
      last = err instanceof Error ? err.message : String(err)
    }
    await sleep(50)
  }
  throw new Error(`${proc.name}: GET ${base}/v2/ not 200 within ${timeoutMs} ms (last: ${last}):\n${tailLog(proc)}`)
}
