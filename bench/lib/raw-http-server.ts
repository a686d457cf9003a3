/**
 * Spawned by the p2p phase (`node raw-http-server.js FILE`): the raw-HTTP baseline's sender, a
 * plain node:http server on 127.0.0.1:<ephemeral> that answers every GET with FILE (1 MiB reads,
 * as Shoal reads its cache). Prints `{"port":N}` on stdout once listening; SIGTERM stops it.
 */
import { createReadStream, statSync } from 'node:fs'
import { createServer } from 'node:http'
import { pipeline } from 'node:stream'

const file = process.argv[2]
if (file === undefined) {
  process.stderr.write('usage: raw-http-server.js FILE\n')
  process.exit(2)
}
const size = statSync(file).size

const server = createServer((req, res) => {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405).end()
    return
  }
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) })
  if (req.method === 'HEAD') {
    res.end()
    return
  }
  pipeline(createReadStream(file, { highWaterMark: 1024 * 1024 }), res, (err) => {
    if (err) process.stderr.write(`raw-http-server: ${err.message}\n`)
  })
})
server.keepAliveTimeout = 10_000
server.listen(0, '127.0.0.1', () => {
  const addr = server.address()
  const port = addr !== null && typeof addr === 'object' ? addr.port : 0
  process.stdout.write(`${JSON.stringify({ port })}\n`)
})
process.once('SIGTERM', () => {
  server.closeAllConnections()
  server.close(() => process.exit(0))
})
