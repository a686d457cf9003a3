/** The lab reads a daemon's counters from its /metrics text (Prometheus exposition format). */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseBytesBySource, parseSwarmMessages } from '../../../bench/lab/case.js'
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
})
