/**
 * The per-byte CPU cost of js-libp2p alone (TCP + Noise or TLS + yamux, one stream, no Shoal
 * code): the floor under Shoal's piece exchange. A sender process streams `--mib` MiB in 4 MiB
 * writes to a receiver process over loopback; each reports its CPU time per MiB.
 *
 *   npm run build && node dist/bench/libp2p-floor.js [--mib 256] [--enc noise|shoal-noise|tls]
 *
 * `noise` is @chainsafe/libp2p-noise as shipped; `shoal-noise` is the daemon's (its cipher with
 * cached keys, and no copy per received message: src/swarm/noise-crypto.ts).
 *
 * Loopback only; both processes are this script's and end with it.
 */
import { fork } from 'node:child_process'
import { parseArgs } from 'node:util'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { tls } from '@libp2p/tls'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { shoalNoise } from '../src/swarm/noise-crypto.js'

const PROTOCOL = '/shoal-bench/floor/1'
const CHUNK = 4 * 1024 * 1024
const MiB = 1024 * 1024

interface Report {
  addr?: string
  userMsPerMiB?: number
  sysMsPerMiB?: number
}

function node(enc: string, listen: string[]) {
  return createLibp2p({
    addresses: { listen },
    transports: [tcp()],
    connectionEncrypters: [enc === 'tls' ? tls() : enc === 'shoal-noise' ? shoalNoise() : noise()],
    streamMuxers: [yamux()],
  })
}

async function receiver(enc: string, total: number): Promise<void> {
  const n = await node(enc, ['/ip4/127.0.0.1/tcp/0'])
  await n.handle(PROTOCOL, async (stream: Stream) => {
    const t0 = process.cpuUsage()
    let got = 0
    await new Promise<void>((resolve) => {
      stream.addEventListener('message', (e) => {
        got += e.data.byteLength
        if (got >= total) resolve()
      })
    })
    const d = process.cpuUsage(t0)
    const mib = total / MiB
    process.send?.({ userMsPerMiB: d.user / 1000 / mib, sysMsPerMiB: d.system / 1000 / mib } satisfies Report)
  })
  process.send?.({ addr: n.getMultiaddrs()[0]?.toString() } satisfies Report)
}

async function sender(enc: string, total: number): Promise<void> {
  const child = fork(process.argv[1] as string, [...process.argv.slice(2), '--role', 'receiver'])
  const reports: Report[] = []
  const next = (): Promise<Report> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('receiver did not report within 120 s')), 120_000)
      child.once('message', (m) => {
        clearTimeout(timer)
        resolve(m as Report)
      })
    })
  try {
    const { addr } = await next()
    if (addr === undefined) throw new Error('receiver has no address')
    const n = await node(enc, [])
    const stream = await n.dialProtocol(multiaddr(addr), PROTOCOL)
    const buf = Buffer.alloc(CHUNK, 7)
    const t0 = process.cpuUsage()
    const w0 = Date.now()
    const done = next()
    for (let sent = 0; sent < total; sent += CHUNK) {
      if (!stream.send(buf)) await new Promise((r) => stream.addEventListener('drain', r, { once: true }))
    }
    reports.push(await done)
    const d = process.cpuUsage(t0)
    const mib = total / MiB
    const recv = reports[0] ?? {}
    console.log(
      `${enc}, ${mib} MiB in ${CHUNK / MiB} MiB writes: ` +
        `receiver ${((recv.userMsPerMiB ?? 0) + (recv.sysMsPerMiB ?? 0)).toFixed(2)} ms CPU/MiB ` +
        `(user ${(recv.userMsPerMiB ?? 0).toFixed(2)}, sys ${(recv.sysMsPerMiB ?? 0).toFixed(2)}), ` +
        `sender ${((d.user + d.system) / 1000 / mib).toFixed(2)} ms CPU/MiB, ` +
        `${(mib / ((Date.now() - w0) / 1000)).toFixed(0)} MiB/s`,
    )
    await n.stop()
  } finally {
    child.kill()
  }
}

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '256' },
    enc: { type: 'string', default: 'noise' },
    role: { type: 'string', default: 'sender' },
  },
})
const total = Number(values.mib) * MiB
if (!Number.isInteger(Number(values.mib)) || Number(values.mib) < 4 || Number(values.mib) > 4096) {
  console.error('--mib: an integer from 4 to 4096')
  process.exit(2)
}
if (values.enc !== 'noise' && values.enc !== 'shoal-noise' && values.enc !== 'tls') {
  console.error('--enc: noise, shoal-noise or tls')
  process.exit(2)
}
if (values.role === 'receiver') await receiver(values.enc, total)
else await sender(values.enc, total).then(() => process.exit(0))
