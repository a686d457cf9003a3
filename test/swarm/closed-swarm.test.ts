/**
 * Closed swarm (`--swarm-key`, made by `shoal keygen`): two daemons with the same key connect and
 * share; a daemon without a key, and one with another key, bootstrapped to them, cannot connect
 * and get nothing from them.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { FakeOrigin } from '../helpers/fake-origin.js'
import {
  DaemonProcess,
  keygen,
  MiB,
  pull,
  removeDir,
  settledBlobBytes,
  stopAll,
  tempDir,
  waitForPeers,
} from '../helpers/swarm.js'

describe('swarm: closed swarm', { timeout: 120_000 }, () => {
  let origin: FakeOrigin
  let root: string
  const daemons: DaemonProcess[] = []

  before(async () => {
    origin = await FakeOrigin.start()
    root = await tempDir('shsw-key-')
  })

  after(async () => {
    await stopAll(daemons)
    await origin?.stop()
    await removeDir(root)
  })

  it('members with the key share; outsiders without it or with another key cannot connect', async () => {
    const key = join(root, 'swarm.key')
    const otherKey = join(root, 'other.key')
    await Promise.all([keygen(key), keygen(otherKey)])
    const [k1, k2] = await Promise.all([readFile(key, 'utf8'), readFile(otherKey, 'utf8')])
    assert.match(k1, /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n?$/)
    assert.notEqual(k1, k2)

    const blob = origin.addRandomBlob('closed/app', 9 * MiB + 5)
    const path = `/v2/closed/app/blobs/${blob.digest}`

    const m1 = await DaemonProcess.start({
      name: 'member1',
      dataDir: join(root, 'm1'),
      upstream: origin.url,
      swarmKey: key,
    })
    daemons.push(m1)
    const m2 = await DaemonProcess.start({
      name: 'member2',
      dataDir: join(root, 'm2'),
      upstream: origin.url,
      swarmKey: key,
      bootstrap: m1.p2pAddrs,
    })
    daemons.push(m2)
    const boot = [...m1.p2pAddrs, ...m2.p2pAddrs]
    const [open, foreign] = await Promise.all([
      DaemonProcess.start({
        name: 'outsider-nokey',
        dataDir: join(root, 'o1'),
        upstream: origin.url,
        bootstrap: boot,
        logLevel: 'debug',
      }),
      DaemonProcess.start({
        name: 'outsider-otherkey',
        dataDir: join(root, 'o2'),
        upstream: origin.url,
        swarmKey: otherKey,
        bootstrap: boot,
        logLevel: 'debug',
      }),
    ])
    daemons.push(open, foreign)

    // The members find each other.
    await waitForPeers([m1, m2], 1)
    const first = await pull(`${m1.url}${path}`, 30_000)
    assert.equal(first.digest, blob.digest, m1.describe())
    const second = await pull(`${m2.url}${path}`, 30_000)
    assert.equal(second.digest, blob.digest, m2.describe())
    const m2bytes = await settledBlobBytes(m2, blob.data.length)
    assert.equal(m2bytes.peer, blob.data.length, `member2 got the blob from member1: ${JSON.stringify(m2bytes)}`)
    assert.equal(m2bytes.origin, 0, JSON.stringify(m2bytes))

    // The outsiders have been dialling the members since they started (bootstrap retries at 0,
    // 0.5, 1, 2 s …): give them a few more seconds, watching that no connection ever holds.
    const deadline = Date.now() + 4_000
    while (Date.now() < deadline) {
      for (const o of [open, foreign]) {
        const st = await o.status()
        assert.equal(st.peers, 0, `${o.name} connected to the closed swarm: ${JSON.stringify(st)}\n${o.describe()}`)
      }
      for (const m of [m1, m2]) {
        const st = await m.status()
        assert.equal(st.peers, 1, `${m.name} has a peer besides the other member: ${JSON.stringify(st)}`)
      }
      await sleep(250)
    }

    // Each outsider pulls the blob: every byte from the origin, none from a peer.
    for (const o of [open, foreign]) {
      const r = await pull(`${o.url}${path}`, 30_000)
      assert.equal(r.error, undefined, `${o.name}: ${r.error}`)
      assert.equal(r.digest, blob.digest)
      const bytes = await settledBlobBytes(o, blob.data.length)
      assert.equal(bytes.peer, 0, `${o.name} got bytes from a peer: ${JSON.stringify(bytes)}`)
      assert.equal(bytes.origin, blob.data.length, `${o.name}: ${JSON.stringify(bytes)}`)
      assert.equal((await o.status()).peers, 0)
    }
    // They did try: their dials of the members' addresses failed in the Noise handshake, and they still run.
    for (const o of [open, foreign]) {
      assert.ok(o.running, o.describe())
      for (const a of boot) {
        assert.ok(
          o.hasLog('bootstrap dial failed', (l) => l.addr === a && /handshake|encryption/i.test(String(l.err))),
          `${o.name}: no failed handshake with ${a}\n${o.describe()}`,
        )
      }
    }
  })
})
