import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream, StreamMuxer } from '@libp2p/interface'
import { multiaddrConnectionPair } from '@libp2p/utils'
import { installHalfWindowUpdates, libraryWindowUpdate, STREAM_WINDOW } from '../../../src/swarm/yamux-window.js'
import { waitFor } from '../../helpers/swarm.js'

/** Yamux frame types (its spec). */
const DATA = 0
const WINDOW_UPDATE = 1
/** The ACK flag (its spec: 0x2). */
const ACK = 2
const KIB = 1024
const MIB = 1024 * KIB

interface SentFrame {
  type: number
  flag: number
  length: number
}

/** Records every frame `stream` sends (its `sendFrame` is the muxer's, bound, per stream). */
function recordFrames(stream: Stream): SentFrame[] {
  const s = stream as unknown as { sendFrame(header: SentFrame, data?: unknown): boolean }
  const sent: SentFrame[] = []
  const send = s.sendFrame
  s.sendFrame = (header, data) => {
    sent.push({ type: header.type, flag: header.flag, length: header.length })
    return send(header, data)
  }
  return sent
}

/**
 * Makes every stream of `muxer` send its window updates as the library does (a peer without this
 * change, e.g. an older Shoal), from the stream's first frame on.
 */
function asOlderPeer(muxer: StreamMuxer): void {
  const m = muxer as unknown as { _newStream(...args: unknown[]): Stream }
  const newStream = m._newStream.bind(m)
  m._newStream = (...args) => {
    const stream = newStream(...args)
    Object.defineProperty(stream, 'sendWindowUpdate', {
      value: libraryWindowUpdate,
      configurable: true,
      writable: true,
    })
    return stream
  }
}

/**
 * Two yamux muxers over an in-memory connection, and one stream between them (`out` opened by the
 * first); `older` names the muxers that act as a peer without this change.
 */
async function streamBetween(older: { opener?: boolean; acceptor?: boolean } = {}): Promise<{
  out: Stream
  inb: Stream
  muxers: StreamMuxer[]
}> {
  const [a, b] = multiaddrConnectionPair()
  const make = yamux({ enableKeepAlive: false })
  const ma = make().createStreamMuxer(a)
  const mb = make().createStreamMuxer(b)
  if (older.opener === true) asOlderPeer(ma)
  if (older.acceptor === true) asOlderPeer(mb)
  const inbound = new Promise<Stream>((resolve) => {
    mb.addEventListener('stream', (evt) => resolve(evt.detail), { once: true })
  })
  // The SYN (a window update with a flag) opens the stream on the other side, no data needed.
  const out = await ma.createStream()
  const inb = await inbound
  return { out, inb, muxers: [ma, mb] }
}

/** Bytes `stream` received, as they come. */
function collect(stream: Stream): { chunks: Uint8Array[]; bytes: () => number } {
  const chunks: Uint8Array[] = []
  stream.addEventListener('message', (evt) => {
    chunks.push(evt.data instanceof Uint8Array ? evt.data : evt.data.subarray())
  })
  return { chunks, bytes: () => chunks.reduce((n, c) => n + c.byteLength, 0) }
}

/**
 * Sends `mib` MiB from `out` in 1 MiB sends and checks that `inb` got the same bytes in order; with
 * `halfWindow`, also that `inb` sent one credit update per half window at most.
 */
async function sendAndCheck(out: Stream, inb: Stream, mib: number, halfWindow = true): Promise<boolean> {
  const got = collect(inb)
  const frames = recordFrames(inb)
  const sent = createHash('sha256')
  const total = mib * MIB
  for (let off = 0; off < total; off += MIB) {
    const chunk = randomBytes(MIB)
    sent.update(chunk)
    if (!out.send(chunk)) {
      await new Promise((resolve) => out.addEventListener('drain', resolve, { once: true }))
    }
  }
  await waitFor(`all ${mib} MiB`, () => got.bytes() === total, 60_000, 5)
  const received = createHash('sha256')
  for (const c of got.chunks) received.update(c)
  assert.equal(received.digest('hex'), sent.digest('hex'), 'the same bytes in the same order')
  const credit = frames.filter((f) => f.type === WINDOW_UPDATE && f.flag === 0)
  assert.ok(credit.length > 0, 'credit was granted')
  assert.equal(frames.filter((f) => f.type === DATA).length, 0, 'the receiving side sent no data')
  if (halfWindow) {
    // This in-memory pair has no round-trip time, so the window never grows past STREAM_WINDOW.
    const halves = total / (STREAM_WINDOW / 2)
    assert.ok(
      credit.length <= halves + 1,
      `${credit.length} updates for ${got.chunks.length} frames, ${halves} half windows`,
    )
    for (const u of credit) assert.ok(u.length >= STREAM_WINDOW / 2, `an update of ${u.length} bytes`)
  } else {
    assert.ok(credit.length >= total / (256 * KIB), `the library's updates: ${credit.length}`)
  }
  return true
}

describe('yamux window updates at half the window (src/swarm/yamux-window.ts)', () => {
  const muxers: StreamMuxer[] = []
  before(() => {
    assert.equal(installHalfWindowUpdates(), true, 'the installed yamux has the internals this replaces')
  })
  after(() => {
    for (const m of muxers) m.abort(new Error('test over'))
  })

  test('the first frame is answered with the ACK and the larger window; then no update until half of it is used', async () => {
    const { out, inb, muxers: ms } = await streamBetween()
    muxers.push(...ms)
    const got = collect(inb)
    const frames = recordFrames(inb)
    // A hundred messages of the size of a Have: 5 000 bytes, far below half of the window.
    for (let i = 0; i < 100; i++) out.send(randomBytes(50))
    await waitFor('the small messages', () => got.bytes() === 5000, 10_000, 5)
    await sleep(20)
    const updates = (): SentFrame[] => frames.filter((f) => f.type === WINDOW_UPDATE)
    assert.equal(updates().length, 1, 'one update: the first')
    assert.equal(updates()[0]?.flag, ACK, 'it carries the ACK')
    // The sender started with the spec's 256 KiB; the grant brings it to STREAM_WINDOW.
    assert.equal(updates()[0]?.length, STREAM_WINDOW - 256 * KIB + 50, 'it grants the larger window')
    // Then just over half the window: one update, for what was used.
    out.send(randomBytes(STREAM_WINDOW / 2))
    await waitFor('the large message', () => got.bytes() === 5000 + STREAM_WINDOW / 2, 10_000, 5)
    await waitFor('a second window update', () => updates().length > 1, 10_000, 5)
    await sleep(20)
    assert.equal(updates().length, 2, 'one more update')
    const granted = updates()[1]?.length ?? 0
    assert.equal(updates()[1]?.flag, 0)
    assert.ok(granted >= STREAM_WINDOW / 2, `the update grants what was used (${granted} bytes)`)
  })

  test('32 MiB through one stream, written in 1 MiB sends, arrive whole and in order, one update per half window at most', async () => {
    const { out, inb, muxers: ms } = await streamBetween()
    muxers.push(...ms)
    assert.equal(await sendAndCheck(out, inb, 32), true)
  })

  test('with a peer that sends the library window updates (an older Shoal), both ways, whoever opened the stream', async () => {
    // This node receives on a stream the older peer opened (its SYN granted nothing beyond 256 KiB).
    const one = await streamBetween({ opener: true })
    muxers.push(...one.muxers)
    assert.equal(await sendAndCheck(one.out, one.inb, 16), true)
    // The older peer receives on that stream: an update from its 256 KiB window after every frame.
    assert.equal(await sendAndCheck(one.inb, one.out, 16, false), true)
    // This node opened the stream; the older peer receives, and sends.
    const two = await streamBetween({ acceptor: true })
    muxers.push(...two.muxers)
    assert.equal(await sendAndCheck(two.out, two.inb, 16, false), true)
    assert.equal(await sendAndCheck(two.inb, two.out, 16), true)
  })

  test('the opening frames (SYN, ACK) still go at once', async () => {
    const [a, b] = multiaddrConnectionPair()
    const make = yamux({ enableKeepAlive: false })
    const ma = make().createStreamMuxer(a)
    const mb = make().createStreamMuxer(b)
    muxers.push(ma, mb)
    const inbound = new Promise<Stream>((resolve) => {
      mb.addEventListener('stream', (evt) => resolve(evt.detail), { once: true })
    })
    // No data at all: the SYN alone must open the stream.
    const out = await ma.createStream()
    const inb = await Promise.race([inbound, sleep(5000).then(() => undefined)])
    assert.ok(inb !== undefined, 'the peer saw the stream from its SYN')
    assert.equal(out.status, 'open')
  })
})
