/**
 * The swarm's message and declined-request counters as Prometheus shows them: the exchange keeps
 * running totals, the metrics take what was added since the last scrape.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Metrics } from '../../../src/metrics/metrics.js'
import { countMessage, messageCounts } from '../../../src/swarm/framing.js'

/** The value of one series in Prometheus text, or undefined when it is not there. */
function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

describe('metrics: swarm messages and declined requests', () => {
  it('counts each kind a message carries', () => {
    const counts = messageCounts()
    countMessage(counts, { have: { index: 1, hash: new Uint8Array(32), received: false } })
    countMessage(counts, { request: { index: 2 } })
    countMessage(counts, { request: { index: 3 } })
    assert.deepEqual(counts, { hello: 0, have: 1, claim: 0, request: 2, piece: 0, cancel: 0, reject: 0, peers: 0 })
  })

  it('shows every kind from the first scrape, and adds only what came since the last', async () => {
    const m = new Metrics()
    const sent = messageCounts()
    const received = messageCounts()
    m.syncSwarmMessages(sent, received)
    let text = await m.registry.metrics()
    assert.equal(value(text, 'shoal_swarm_messages_total{direction="sent",kind="request"}'), 0)
    assert.equal(value(text, 'shoal_swarm_messages_total{direction="received",kind="piece"}'), 0)
    assert.equal(value(text, 'shoal_piece_requests_declined_total{reason="on_its_way"}'), 0)

    sent.request = 5
    received.piece = 3
    m.syncSwarmMessages(sent, received)
    sent.request = 7
    m.syncSwarmMessages(sent, received)
    m.syncRequestsDeclined({ deferred: 4, redirected: 1 })
    m.syncRequestsDeclined({ deferred: 6, redirected: 1 })
    text = await m.registry.metrics()
    assert.equal(value(text, 'shoal_swarm_messages_total{direction="sent",kind="request"}'), 7)
    assert.equal(value(text, 'shoal_swarm_messages_total{direction="received",kind="piece"}'), 3)
    assert.equal(value(text, 'shoal_swarm_messages_total{direction="received",kind="request"}'), 0)
    assert.equal(value(text, 'shoal_piece_requests_declined_total{reason="on_its_way"}'), 6)
    assert.equal(value(text, 'shoal_piece_requests_declined_total{reason="held_elsewhere"}'), 1)
  })
})
