/**
 * The lab's eyes inside the network: runs in the switch namespace (address 10.87.0.1 on the
 * bridge), reads JSON requests on stdin, one per line, and answers on stdout, one per line.
 *
 *   {"id":1,"op":"get","url":"http://10.87.0.11:9100/metrics","timeoutMs":2000}
 *     → {"id":1,"status":200,"body":"…"}   (or {"id":1,"error":"…"})
 *   {"id":2,"op":"counters","devs":["p-o","p-n1"]}
 *     → {"id":2,"counters":{"p-o":{"rx":…,"tx":…},…}}   (bytes, from /sys/class/net, read in this namespace)
 *
 * It exits when stdin closes (the lab went away) or on SIGTERM.
 */
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'

interface Req {
  id: number
  op: string
  url?: string
  timeoutMs?: number
  devs?: string[]
}

function reply(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`)
}

function counter(dev: string, which: 'rx' | 'tx'): number {
  return Number(readFileSync(`/sys/class/net/${dev}/statistics/${which}_bytes`, 'utf8').trim())
}

async function handle(req: Req): Promise<void> {
  try {
    if (req.op === 'get' && typeof req.url === 'string') {
      const res = await fetch(req.url, { signal: AbortSignal.timeout(req.timeoutMs ?? 3000) })
      const body = await res.text()
      reply({ id: req.id, status: res.status, body: body.slice(0, 1_000_000) })
      return
    }
    if (req.op === 'counters' && Array.isArray(req.devs)) {
      const counters: Record<string, { rx: number; tx: number }> = {}
      for (const dev of req.devs) counters[dev] = { rx: counter(dev, 'rx'), tx: counter(dev, 'tx') }
      reply({ id: req.id, counters })
      return
    }
    reply({ id: req.id, error: `bad request ${JSON.stringify(req)}` })
  } catch (err) {
    reply({ id: req.id, error: err instanceof Error ? err.message : String(err) })
  }
}

const rl = createInterface({ input: process.stdin })
rl.on('line', (line) => {
  if (line.trim() === '') return
  let req: Req
  try {
    req = JSON.parse(line) as Req
  } catch {
    return
  }
  void handle(req)
})
rl.on('close', () => process.exit(0))
process.on('SIGTERM', () => process.exit(0))
