/**
 * How daemons find each other: a static bootstrap multiaddr without /p2p/, a DNS name
 * (`dns:NAME:PORT`, also written `/dns4/NAME/tcp/PORT`) — from /etc/hosts and from a real DNS
 * server — and mDNS. Loopback in the host namespace has no multicast, so the mDNS daemons (and the
 * DNS server) run inside network namespaces made here (`ip netns`), deleted afterwards.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { FakeOrigin } from '../helpers/fake-origin.js'
import {
  DaemonProcess,
  Helper,
  MiB,
  Netns,
  NODE,
  pull,
  removeDir,
  settledBlobBytes,
  stopAll,
  tempDir,
  waitFor,
  waitForPeers,
} from '../helpers/swarm.js'

/** A tiny DNS server: A 127.0.0.1 for `name`, NXDOMAIN for anything else (UDP, 127.0.0.1:53). */
function dnsServerScript(name: string): string {
  return `
const dgram = require('node:dgram')
const s = dgram.createSocket('udp4')
s.on('message', (m, r) => {
  let o = 12
  const labels = []
  while (m[o] !== 0) { labels.push(m.subarray(o + 1, o + 1 + m[o]).toString()); o += m[o] + 1 }
  o += 1
  const qtype = m.readUInt16BE(o)
  const q = m.subarray(12, o + 4)
  const hit = labels.join('.').toLowerCase() === ${JSON.stringify(name)}
  const h = Buffer.alloc(12)
  m.copy(h, 0, 0, 2)
  h.writeUInt16BE(hit ? 0x8180 : 0x8183, 2)
  h.writeUInt16BE(1, 4)
  h.writeUInt16BE(hit && qtype === 1 ? 1 : 0, 6)
  const parts = [h, q]
  if (hit && qtype === 1) parts.push(Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]))
  console.log('query ' + labels.join('.') + ' type ' + qtype)
  s.send(Buffer.concat(parts), r.port, r.address)
})
s.bind(53, '127.0.0.1', () => console.log('dns ready'))
`
}

describe('swarm: discovery', { timeout: 150_000 }, () => {
  let origin: FakeOrigin
  let root: string
  const daemons: DaemonProcess[] = []
  const helpers: Helper[] = []
  const namespaces: Netns[] = []

  before(async () => {
    origin = await FakeOrigin.start()
    root = await tempDir('shsw-disc-')
  })

  after(async () => {
    // Processes first (by PID), then their namespaces.
    await stopAll(daemons)
    await Promise.all(helpers.map((h) => h.stop()))
    for (const ns of namespaces) await ns.delete()
    await origin?.stop()
    await removeDir(root)
  })

  let seed: DaemonProcess | undefined

  it('static bootstrap: a multiaddr without /p2p/ connects, and the peers share a blob', async () => {
    seed = await DaemonProcess.start({ name: 'seed', dataDir: join(root, 'seed'), upstream: origin.url })
    daemons.push(seed)
    const addr = seed.p2pAddrs[0] as string
    assert.match(addr, /^\/ip4\/127\.0\.0\.1\/tcp\/\d+$/)
    const d = await DaemonProcess.start({
      name: 'static',
      dataDir: join(root, 'static'),
      upstream: origin.url,
      bootstrap: [addr],
    })
    daemons.push(d)
    await waitForPeers([seed, d], 1)
    const st = await d.status()
    assert.equal(st.peers, 1)

    const blob = origin.addRandomBlob('disc/app', 5 * MiB + 1)
    const path = `/v2/disc/app/blobs/${blob.digest}`
    assert.equal((await pull(`${seed.url}${path}`, 30_000)).digest, blob.digest)
    const r = await pull(`${d.url}${path}`, 30_000)
    assert.equal(r.digest, blob.digest)
    assert.equal((await settledBlobBytes(d, blob.data.length)).peer, blob.data.length, 'the blob came from the seed')
  })

  it('DNS bootstrap from /etc/hosts: dns:localhost:PORT and /dns4/localhost/tcp/PORT connect', async () => {
    assert.ok(seed !== undefined, 'the static test started the seed')
    const port = /\/tcp\/(\d+)$/.exec(seed.p2pAddrs[0] as string)?.[1] as string
    const [byName, byMultiaddr] = await Promise.all([
      DaemonProcess.start({
        name: 'dns-name',
        dataDir: join(root, 'dns-name'),
        upstream: origin.url,
        bootstrap: [`dns:localhost:${port}`],
        logLevel: 'debug',
      }),
      DaemonProcess.start({
        name: 'dns-multiaddr',
        dataDir: join(root, 'dns-multiaddr'),
        upstream: origin.url,
        bootstrap: [`/dns4/localhost/tcp/${port}`],
        logLevel: 'debug',
      }),
    ])
    daemons.push(byName, byMultiaddr)
    // Bootstrap dials at 0, 0.5, 1, 2, 4 s …: 10 s is several rounds.
    for (const d of [byName, byMultiaddr]) {
      await waitFor(
        `${d.name} to connect to the seed through the name localhost`,
        async () => (await d.status()).peers >= 1,
        10_000,
        200,
        () => d.describe(3000),
      )
    }
  })

  it('DNS bootstrap from a DNS server (inside a network namespace): dns:NAME:PORT connects', async () => {
    const ns = await Netns.create('shoal-dns')
    namespaces.push(ns)
    await ns.setResolver('127.0.0.1')
    const name = 'peers.shoal.test'
    const dns = new Helper('dns', 'ip', ['netns', 'exec', ns.name, NODE, '-e', dnsServerScript(name)])
    helpers.push(dns)
    await waitFor('the DNS server', () => dns.output().includes('dns ready') || !dns.running, 10_000, 50)
    assert.ok(dns.running, dns.output())

    const upstream = 'http://127.0.0.1:9' // nothing is fetched here
    const first = await DaemonProcess.start({
      name: 'ns-dns-seed',
      dataDir: join(root, 'ns-dns-seed'),
      upstream,
      netns: ns.name,
      listenPort: 5001,
      adminPort: 9001,
      p2pPort: 4101,
    })
    daemons.push(first)
    const second = await DaemonProcess.start({
      name: 'ns-dns-peer',
      dataDir: join(root, 'ns-dns-peer'),
      upstream,
      netns: ns.name,
      listenPort: 5002,
      adminPort: 9002,
      p2pPort: 4102,
      bootstrap: [`dns:${name}:4101`],
      logLevel: 'debug',
    })
    daemons.push(second)
    await waitFor(
      'the daemons in the namespace to connect through the DNS name',
      async () => (await second.status()).peers >= 1 && (await first.status()).peers >= 1,
      15_000,
      200,
      () => `${second.describe(3000)}\n[dns server]\n${dns.output()}`,
    )
    assert.match(dns.output(), new RegExp(`query ${name.replace(/\./g, '\\.')} type 1`))
  })

  it('mDNS: two daemons on a multicast-capable loopback (network namespace) find each other', async () => {
    const ns = await Netns.create('shoal-mdns')
    namespaces.push(ns)
    const upstream = 'http://127.0.0.1:9'
    const pair = await Promise.all(
      [1, 2].map((i) =>
        DaemonProcess.start({
          name: `mdns${i}`,
          dataDir: join(root, `mdns${i}`),
          upstream,
          netns: ns.name,
          listenPort: 5000 + i,
          adminPort: 9000 + i,
          mdns: true,
        }),
      ),
    )
    daemons.push(...pair)
    // mDNS queries at start, then every 10 s.
    await waitForPeers(pair, 1, 25_000)
    const [a, b] = pair as [DaemonProcess, DaemonProcess]
    const sa = await a.status()
    const sb = await b.status()
    assert.equal(sa.peers, 1)
    assert.equal(sb.peers, 1)
    // Connected to each other (not to something else on the namespace's loopback).
    const peersOf = async (d: DaemonProcess): Promise<string> =>
      (await d.admin('/metrics'))?.body.match(/^shoal_connected_peers \d+/m)?.[0] ?? ''
    assert.equal(await peersOf(a), 'shoal_connected_peers 1')
    assert.equal(await peersOf(b), 'shoal_connected_peers 1')
  })
})
