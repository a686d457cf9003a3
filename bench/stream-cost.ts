/**
 * What a piece-protocol stream costs to open, beside what the same exchange costs on a stream
 * already open: the per-session price of one stream per (peer, blob). Two of the daemon's swarm
 * nodes (src/swarm/node.ts: TCP, Shoal's Noise, yamux, the peer-store merge skip) in this one
 * process, connected over loopback; each round sends a Hello-sized message (200 bytes) and waits
 * for a reply of the same size,
 *   - "new stream": on a stream opened for it (dial, protocol negotiation, close), as a session does;
 *   - "open stream" (the baseline): on one stream kept open for all rounds.
 * Both ends run here, so the CPU per round is both ends' together. Rounds go 10 at a time, in
 * alternating batches of the two cases.
 *
 *   npm run bench:streams [-- --rounds 2000]
 *
 * Loopback only; both nodes end with the script.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { Stream } from '@libp2p/interface'
import { silentLogger } from '../src/log.js'
import { SwarmNode } from '../src/swarm/node.js'

const PROTOCOL = '/shoal-bench/streams/1'
const MESSAGE = 200
const BATCH = 10

async function swarmNode(dir: string, name: string): Promise<SwarmNode> {
  const node = new SwarmNode(
    {
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: [],
      mdns: false,
      encryption: ['noise'],
      identityPath: join(dir, `${name}.key`),
      maxConnections: 10,
      bootstrapIntervalMs: 60_000,
    },
    { logger: silentLogger() },
  )
  await node.start()
  return node
}

/** Sends one message and resolves with the first message that comes back. */
function roundTrip(stream: Stream, msg: Uint8Array): Promise<void> {
  const reply = new Promise<void>((resolve, reject) => {
    const onMessage = (): void => {
      stream.removeEventListener('close', onClose)
      resolve()
    }
    const onClose = (): void => {
      stream.removeEventListener('message', onMessage)
      reject(new Error('stream closed before the reply'))
    }
    stream.addEventListener('message', onMessage, { once: true })
    stream.addEventListener('close', onClose, { once: true })
  })
  stream.send(msg)
  return reply
}

function cpuMs(since: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(since)
  return (c.user + c.system) / 1000
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '2000' } } })
  const rounds = Math.max(BATCH, Math.min(100_000, Number(values.rounds) || 2000))
  const dir = await mkdtemp(join(tmpdir(), 'shoal-bench-streams-'))
  const nodes: SwarmNode[] = []
  try {
    const a = await swarmNode(dir, 'a')
    nodes.push(a)
    const b = await swarmNode(dir, 'b')
    nodes.push(b)
    const msg = new Uint8Array(MESSAGE)
    // Answers every message with one of the same size, on whichever stream it came.
    await a.handle(
      PROTOCOL,
      (stream) => {
        stream.addEventListener('message', () => stream.send(msg))
        stream.addEventListener('remoteCloseWrite', () => stream.close().catch(() => {}))
      },
      4096,
    )
    await b.handle(PROTOCOL, (stream) => stream.abort(new Error('not used')), 4096)
    const addr = a.libp2p.getMultiaddrs()[0]
    if (addr === undefined) throw new Error('the node listens nowhere')
    await b.libp2p.dial(addr)
    const open = (): Promise<Stream> => b.dialProtocol(a.peerId, PROTOCOL, AbortSignal.timeout(10_000))
    const kept = await Promise.all(Array.from({ length: BATCH }, open))
    const fresh = async (): Promise<void> => {
      const s = await open()
      await roundTrip(s, msg)
      await s.close()
    }
    const cases = {
      'new stream': () => Promise.all(Array.from({ length: BATCH }, fresh)),
      'open stream': () => Promise.all(kept.map((s) => roundTrip(s, msg))),
    }
    // Warm-up: the JIT, and the peer store's first merge of the protocol.
    for (let i = 0; i < 20; i++) for (const run of Object.values(cases)) await run()
    const spent = { 'new stream': { cpu: 0, wall: 0 }, 'open stream': { cpu: 0, wall: 0 } }
    for (let done = 0; done < rounds; done += BATCH * 10) {
      for (const [name, run] of Object.entries(cases) as [keyof typeof cases, () => Promise<unknown>][]) {
        const c0 = process.cpuUsage()
        const t0 = performance.now()
        for (let i = 0; i < 10; i++) await run()
        spent[name].cpu += cpuMs(c0)
        spent[name].wall += performance.now() - t0
      }
    }
    const n = Math.ceil(rounds / (BATCH * 10)) * BATCH * 10
    const per = (name: keyof typeof spent) => ({ cpu: spent[name].cpu / n, wall: spent[name].wall / n })
    const fresh1 = per('new stream')
    const kept1 = per('open stream')
    console.log(`streams bench: ${n} rounds per case, ${MESSAGE} B each way, both ends in one process`)
    console.log('case                     CPU ms/round  wall ms/round')
    console.log(
      `new stream per round     ${fresh1.cpu.toFixed(3).padStart(12)}  ${fresh1.wall.toFixed(3).padStart(13)}`,
    )
    console.log(`open stream (baseline)   ${kept1.cpu.toFixed(3).padStart(12)}  ${kept1.wall.toFixed(3).padStart(13)}`)
    console.log(
      `new / open               ${(fresh1.cpu / kept1.cpu).toFixed(2).padStart(11)}×  ${(fresh1.wall / kept1.wall).toFixed(2).padStart(12)}×`,
    )
    await Promise.all(kept.map((s) => s.close().catch(() => {})))
  } finally {
    for (const node of nodes) await node.stop().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
