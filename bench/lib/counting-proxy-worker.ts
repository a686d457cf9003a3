/**
 * Worker thread: a TCP proxy from 127.0.0.1:<ephemeral> to the origin registry that counts the
 * bytes in each direction into shared counters. Running it off the main thread keeps the
 * benchmark's clients (hashing on the main thread) from slowing the origin link down.
 */
import { connect, createServer, type Socket } from 'node:net'
import { parentPort, workerData } from 'node:worker_threads'
import { COUNTER, type ProxyWorkerData } from './counting-proxy.js'

const data = workerData as ProxyWorkerData
const counters = new BigInt64Array(data.counters)
const sockets = new Set<Socket>()

const server = createServer((client) => {
  Atomics.add(counters, COUNTER.connections, 1n)
  Atomics.add(counters, COUNTER.open, 1n)
  const upstream = connect({ host: data.targetHost, port: data.targetPort })
  sockets.add(client)
  sockets.add(upstream)
  let closed = false
  const close = (): void => {
    if (closed) return
    closed = true
    Atomics.sub(counters, COUNTER.open, 1n)
    client.destroy()
    upstream.destroy()
    sockets.delete(client)
    sockets.delete(upstream)
  }
  upstream.on('data', (chunk: Buffer) => {
    Atomics.add(counters, COUNTER.down, BigInt(chunk.length))
    Atomics.store(counters, COUNTER.lastDataAt, BigInt(Date.now()))
  })
  client.on('data', (chunk: Buffer) => {
    Atomics.add(counters, COUNTER.up, BigInt(chunk.length))
    Atomics.store(counters, COUNTER.lastDataAt, BigInt(Date.now()))
  })
  client.pipe(upstream)
  upstream.pipe(client)
  client.on('error', close)
  upstream.on('error', close)
  client.on('close', close)
  upstream.on('close', close)
})

server.on('error', (err) => {
  parentPort?.postMessage({ type: 'error', message: err.message })
})

server.listen(0, '127.0.0.1', () => {
  const addr = server.address()
  const port = addr !== null && typeof addr === 'object' ? addr.port : 0
  parentPort?.postMessage({ type: 'listening', port })
})

parentPort?.on('message', (msg: unknown) => {
  if (msg !== 'close') return
  for (const s of sockets) s.destroy()
  server.close(() => {
    parentPort?.postMessage({ type: 'closed' })
    parentPort?.close()
  })
})
