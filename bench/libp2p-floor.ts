/**
 * The per-byte CPU cost of js-libp2p alone (TCP + Noise or TLS + yamux, one stream, no Shoal
 * code): the floor under Shoal's piece exchange. A sender process streams `--mib` MiB in 4 MiB
 * writes to a receiver process over loopback; each reports its CPU time per MiB.
 *
 *   npm run build && node dist/bench/libp2p-floor.js [--mib 256] [--enc noise|shoal-noise|tls|raw] [--record KiB]
 *
 * `noise` is @chainsafe/libp2p-noise as shipped; `shoal-noise` is the daemon's (its cipher with
 * cached keys, and no copy per received message: src/swarm/noise-crypto.ts). `raw` is no libp2p at
 * all: a plain TCP connection carrying ChaCha20-Poly1305 records of `--record` bytes (a 4-byte
 * length, the ciphertext, the tag), i.e. what a bulk path for piece data beside the libp2p stream
 * could cost at best (no handshake: a fixed key; records decrypted as they are whole).
 *
 * Loopback only; both processes are this script's and end with it.
 */
import { fork } from 'node:child_process'
import { createCipheriv, createDecipheriv, createSecretKey } from 'node:crypto'
import { connect, createServer, type Socket } from 'node:net'
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

const RAW_KEY = createSecretKey(Buffer.alloc(32, 1))
const TAG = 16

function rawNonce(n: number): Buffer {
  const nonce = Buffer.alloc(12)
  nonce.writeUInt32LE(n, 4)
  return nonce
}

function report(t0: NodeJS.CpuUsage, total: number): void {
  const d = process.cpuUsage(t0)
  const mib = total / MiB
  process.send?.({ userMsPerMiB: d.user / 1000 / mib, sysMsPerMiB: d.system / 1000 / mib } satisfies Report)
}

/** `raw`: records decrypted as each is whole, the pending bytes kept as a list of socket reads. */
function rawReceiver(total: number): void {
  const server = createServer((socket: Socket) => {
    const t0 = process.cpuUsage()
    let pending: Buffer[] = []
    let pendingBytes = 0
    let got = 0
    let n = 0
    const take = (bytes: number): Buffer => {
      const all = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending)
      const rest = all.subarray(bytes)
      pending = rest.byteLength > 0 ? [rest] : []
      pendingBytes = rest.byteLength
      return all.subarray(0, bytes)
    }
    let need = -1
    socket.on('data', (buf: Buffer) => {
      pending.push(buf)
      pendingBytes += buf.byteLength
      for (;;) {
        if (need < 0) {
          if (pendingBytes < 4) return
          need = take(4).readUInt32BE(0)
        }
        if (pendingBytes < need) return
        const record = take(need)
        need = -1
        const decipher = createDecipheriv('chacha20-poly1305', RAW_KEY, rawNonce(n++), { authTagLength: TAG })
        decipher.setAuthTag(record.subarray(record.byteLength - TAG))
        got += decipher.update(record.subarray(0, record.byteLength - TAG)).byteLength
        decipher.final()
        if (got >= total) {
          report(t0, total)
          return
        }
      }
    })
  })
  server.listen(0, '127.0.0.1', () => {
    const a = server.address()
    process.send?.({ addr: typeof a === 'object' && a !== null ? String(a.port) : undefined } satisfies Report)
  })
}

async function rawSend(port: number, total: number, record: number): Promise<void> {
  const socket = connect(port, '127.0.0.1')
  await new Promise((r) => socket.once('connect', r))
  const plain = Buffer.alloc(record - TAG, 7)
  let n = 0
  for (let sent = 0; sent < total; sent += plain.byteLength) {
    const cipher = createCipheriv('chacha20-poly1305', RAW_KEY, rawNonce(n++), { authTagLength: TAG })
    const bytes = Math.min(plain.byteLength, total - sent)
    const ciphertext = cipher.update(plain.subarray(0, bytes))
    cipher.final()
    const length = Buffer.alloc(4)
    length.writeUInt32BE(bytes + TAG)
    socket.cork()
    socket.write(length)
    socket.write(ciphertext)
    const more = socket.write(cipher.getAuthTag())
    socket.uncork()
    if (!more) await new Promise((r) => socket.once('drain', r))
  }
  return new Promise((r) => socket.end(r))
}

async function receiver(enc: string, total: number): Promise<void> {
  if (enc === 'raw') {
    rawReceiver(total)
    return
  }
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
    report(t0, total)
  })
  process.send?.({ addr: n.getMultiaddrs()[0]?.toString() } satisfies Report)
}

async function sender(enc: string, total: number, record: number): Promise<void> {
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
    let n: Awaited<ReturnType<typeof node>> | undefined
    let t0: NodeJS.CpuUsage
    let w0: number
    let done: Promise<Report>
    if (enc === 'raw') {
      t0 = process.cpuUsage()
      w0 = Date.now()
      done = next()
      await rawSend(Number(addr), total, record)
    } else {
      n = await node(enc, [])
      const stream = await n.dialProtocol(multiaddr(addr), PROTOCOL)
      const buf = Buffer.alloc(CHUNK, 7)
      t0 = process.cpuUsage()
      w0 = Date.now()
      done = next()
      for (let sent = 0; sent < total; sent += CHUNK) {
        if (!stream.send(buf)) await new Promise((r) => stream.addEventListener('drain', r, { once: true }))
      }
    }
    reports.push(await done)
    const d = process.cpuUsage(t0)
    const mib = total / MiB
    const recv = reports[0] ?? {}
    console.log(
      `${enc}, ${mib} MiB in ${enc === 'raw' ? `${record / 1024} KiB records` : `${CHUNK / MiB} MiB writes`}: ` +
        `receiver ${((recv.userMsPerMiB ?? 0) + (recv.sysMsPerMiB ?? 0)).toFixed(2)} ms CPU/MiB ` +
        `(user ${(recv.userMsPerMiB ?? 0).toFixed(2)}, sys ${(recv.sysMsPerMiB ?? 0).toFixed(2)}), ` +
        `sender ${((d.user + d.system) / 1000 / mib).toFixed(2)} ms CPU/MiB, ` +
        `${(mib / ((Date.now() - w0) / 1000)).toFixed(0)} MiB/s`,
    )
    await n?.stop()
  } finally {
    child.kill()
  }
}

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '256' },
    enc: { type: 'string', default: 'noise' },
    role: { type: 'string', default: 'sender' },
    record: { type: 'string', default: '1024' },
  },
})
const total = Number(values.mib) * MiB
if (!Number.isInteger(Number(values.mib)) || Number(values.mib) < 4 || Number(values.mib) > 4096) {
  console.error('--mib: an integer from 4 to 4096')
  process.exit(2)
}
if (!['noise', 'shoal-noise', 'tls', 'raw'].includes(values.enc)) {
  console.error('--enc: noise, shoal-noise, tls or raw')
  process.exit(2)
}
const record = Number(values.record) * 1024
if (!Number.isInteger(Number(values.record)) || Number(values.record) < 1 || Number(values.record) > 16384) {
  console.error('--record: KiB per raw record, an integer from 1 to 16384')
  process.exit(2)
}
if (values.role === 'receiver') await receiver(values.enc, total)
else await sender(values.enc, total, record).then(() => process.exit(0))
