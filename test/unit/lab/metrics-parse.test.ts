/** The lab reads a daemon's counters from its /metrics text (Prometheus exposition format). */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { bytesSince, messagesSince, parseBytesBySource, parseSwarmMessages } from '../../../bench/lab/case.js'
import { Metrics } from '../../../src/metrics/metrics.js'
import { messageCounts } from '../../../src/swarm/framing.js'

describe('lab: counters from /metrics', () => {
  it('reads what the daemon exposes: bytes by source, messages by kind, declined requests', async () => {
    const m = new Metrics()
    m.addBlobBytes('origin', 1024)
    m.addBlobBytes('peer', 4096)
    const sent = { ...messageCounts(), request: 12, have: 3 }
    const received = { ...messageCounts(), piece: 11, reject: 1 }
    m.syncSwarmMessages(sent, received)
    m.syncRequestsDeclined({ deferred: 2, redirected: 5 })
    const text = await m.registry.metrics()

    assert.deepEqual(parseBytesBySource(text), { origin: 1024, peer: 4096, cache: 0, served: 0, unwanted: 0 })
    const swarm = parseSwarmMessages(text)
    assert.deepEqual(swarm.sent, sent)
    assert.deepEqual(swarm.received, received)
    assert.deepEqual(swarm.declined, { on_its_way: 2, held_elsewhere: 5 })
  })

  it('gives empty counts for a daemon that exposes none (a proxy, an older daemon)', () => {
    assert.deepEqual(parseSwarmMessages('# nothing here\n'), { sent: {}, received: {}, declined: {} })
  })

  it('counts a case from its start when the daemons worked before it (--warm-daemons)', async () => {
    const m = new Metrics()
    m.addBlobBytes('origin', 100)
    m.addBlobBytes('peer', 300)
    m.syncSwarmMessages({ ...messageCounts(), have: 4 }, { ...messageCounts(), piece: 3 })
    const before = await m.registry.metrics()
    m.addBlobBytes('origin', 1000)
    m.addBlobBytes('peer', 5000)
    m.syncSwarmMessages({ ...messageCounts(), have: 10 }, { ...messageCounts(), piece: 8 })
    const after = await m.registry.metrics()

    assert.deepEqual(bytesSince(parseBytesBySource(after), parseBytesBySource(before)), {
      origin: 1000,
      peer: 5000,
      cache: 0,
      served: 0,
      unwanted: 0,
    })
    const msgs = messagesSince(parseSwarmMessages(after), parseSwarmMessages(before))
    assert.equal(msgs.sent.have, 6)
    assert.equal(msgs.received.piece, 5)
    assert.equal(msgs.sent.request, 0)
    // Without an earlier reading (daemons started for the case) the totals are the case's.
    assert.deepEqual(bytesSince(parseBytesBySource(after), undefined), parseBytesBySource(after))
  })
})
