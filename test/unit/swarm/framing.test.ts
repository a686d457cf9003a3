import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { encodeFrame, encodePieceFrame, FrameDecoder, FrameWriter, releasePiece } from '../../../src/swarm/framing.js'

describe('piece protocol framing', () => {
  test('a Piece frame sent as header + data is byte for byte what the protobuf codec gives', () => {
    const cases: [number, number][] = [
      [0, 0],
      [0, 5],
      [1, 4 * 1024 * 1024],
      [300, 16 * 1024 * 1024],
      [70_000, 127],
      [5, 128],
    ]
    for (const [index, size] of cases) {
      const data = new Uint8Array(size).map((_, k) => k & 255)
      const [head, body] = encodePieceFrame(index, data)
      assert.ok(
        Buffer.concat([head, body]).equals(Buffer.from(encodeFrame({ piece: { index, data } }))),
        `${index}/${size}`,
      )
    }
  })

  test('the decoder splits frames across arbitrary chunk boundaries', () => {
    const frames = [
      encodeFrame({ have: { index: 3, hash: new Uint8Array(32).fill(7), received: true } }),
      ...encodePieceFrame(9, new Uint8Array(70_000).fill(1)),
      encodeFrame({ claim: { index: 4, queued: true, takeover: false, yieldTo: '', handoff: false } }),
    ]
    const all = Buffer.concat(frames)
    const decoder = new FrameDecoder(1024 * 1024)
    const got = []
    for (let off = 0; off < all.length; off += 777) got.push(...decoder.push(all.subarray(off, off + 777)))
    assert.equal(got.length, 3)
    assert.equal(got[0]?.have?.index, 3)
    assert.equal(got[0]?.have?.received, true)
    assert.equal(got[1]?.piece?.index, 9)
    assert.equal(got[1]?.piece?.data.byteLength, 70_000)
    assert.equal(got[2]?.claim?.index, 4)
    assert.equal(got[2]?.claim?.queued, true)
    assert.equal(got[2]?.claim?.takeover, false)
  })

  test('large frames (assembled in one pooled buffer) decode across any chunking, buffers or lists', () => {
    const piece = (i: number) => new Uint8Array(4 * 1024 * 1024 + 5).map((_, k) => (k * 31 + i) & 255)
    const frames = [
      ...encodePieceFrame(1, piece(1)),
      encodeFrame({ have: { index: 3, hash: new Uint8Array(32).fill(7), received: false } }),
      ...encodePieceFrame(2, piece(2)),
      ...encodePieceFrame(300, piece(3)),
      encodeFrame({ claim: { index: 4, queued: false, takeover: false, yieldTo: '12D3KooWtaker', handoff: false } }),
    ]
    const all = Buffer.concat(frames)
    const edges: number[] = []
    for (const f of frames) edges.push((edges.at(-1) ?? 0) + f.byteLength)
    for (const step of [1, 2, 3, 65_536, 65_537, 1_000_003]) {
      for (const asList of [false, true]) {
        const decoder = new FrameDecoder(32 * 1024 * 1024)
        const got = []
        // Small steps only within 32 bytes of the frames' edges (else they take too long).
        for (let off = 0; off < all.length; ) {
          const next = edges.find((e) => e + 32 > off) ?? all.length
          const n = step < 64 && next - off > 32 ? next - off - 32 : step
          const part = all.subarray(off, off + n)
          got.push(...decoder.push(asList ? new Uint8ArrayList(part.subarray(0, 7), part.subarray(7)) : part))
          off += n
        }
        assert.equal(got.length, 5, `step ${step}, list ${asList}`)
        assert.ok(Buffer.from(got[0]?.piece?.data ?? []).equals(piece(1)), `piece 1, step ${step}`)
        assert.equal(got[1]?.have?.index, 3)
        assert.ok(Buffer.from(got[2]?.piece?.data ?? []).equals(piece(2)), `piece 2, step ${step}`)
        assert.equal(got[3]?.piece?.index, 300)
        assert.ok(Buffer.from(got[3]?.piece?.data ?? []).equals(piece(3)), `piece 3, step ${step}`)
        assert.equal(got[4]?.claim?.index, 4)
        assert.equal(got[4]?.claim?.yieldTo, '12D3KooWtaker')
        assert.equal(decoder.buffered, 0)
        for (const m of got) if (m.piece !== undefined) releasePiece(m.piece.data)
      }
    }
  })

  test('a large frame that is already whole when it comes is still assembled in a pooled buffer', () => {
    const data = new Uint8Array(4 * 1024 * 1024).map((_, k) => (k * 7) & 255)
    const all = Buffer.concat([
      encodeFrame({ have: { index: 1, hash: new Uint8Array(32), received: false } }),
      ...encodePieceFrame(5, data),
      ...encodePieceFrame(6, data),
    ])
    // Many socket reads given at once, as a stream does to a reader that fell behind.
    const reads: Uint8Array[] = []
    for (let off = 0; off < all.length; off += 32 * 1024) reads.push(all.subarray(off, off + 32 * 1024))
    const decoder = new FrameDecoder(32 * 1024 * 1024)
    const got = decoder.push(new Uint8ArrayList(...reads))
    assert.equal(got.length, 3)
    assert.equal(decoder.buffered, 0)
    for (const m of got.slice(1)) {
      assert.ok(Buffer.from(m.piece?.data ?? []).equals(data))
      // A pooled buffer has room for the frame's header (its class is the piece size + 64).
      assert.equal(m.piece?.data.buffer.byteLength, 4 * 1024 * 1024 + 64)
      releasePiece(m.piece?.data ?? new Uint8Array())
    }
  })

  test('a frame over the limit is refused before it is buffered', () => {
    const decoder = new FrameDecoder(1000)
    const [head] = encodePieceFrame(1, new Uint8Array(5000))
    assert.throws(() => decoder.push(head), { code: 'SIZE_INVALID' })
  })
})

/** A stream whose write buffer empties only when the test says so. */
class HeldStream extends EventTarget {
  status = 'open'
  writeBufferLength = 0
  readonly written: Uint8Array[] = []
  send(part: Uint8Array): boolean {
    this.written.push(part)
    this.writeBufferLength += part.byteLength
    return false
  }
  flush(): void {
    this.writeBufferLength = 0
    this.dispatchEvent(new Event('drain'))
  }
}

describe('FrameWriter', () => {
  test('control messages go ahead of pieces waiting for their turn, never into the middle of one', async () => {
    const stream = new HeldStream()
    const writer = new FrameWriter(stream as unknown as Stream, 1024)
    const piece = (i: number) => new Uint8Array(64 * 1024).fill(i)
    const order: string[] = []
    const p1 = writer.sendPiece(1, piece(1)).then(() => order.push('piece 1'))
    const p2 = writer.sendPiece(2, piece(2)).then(() => order.push('piece 2'))
    const claim = writer
      .send({ claim: { index: 7, queued: false, takeover: true, yieldTo: '', handoff: false } })
      .then(() => order.push('claim'))
    const have = writer
      .send({ have: { index: 1, hash: new Uint8Array(32), received: true } })
      .then(() => order.push('have'))
    // Piece 1 is in the stream's buffer, over the high-water mark: everything else waits.
    await new Promise((r) => setImmediate(r))
    assert.equal(stream.written.length, 2, 'piece 1: header and data')
    for (let k = 0; k < 3; k++) {
      stream.flush()
      await new Promise((r) => setImmediate(r))
    }
    await Promise.all([p1, p2, claim, have])
    assert.deepEqual(order, ['piece 1', 'claim', 'have', 'piece 2'])
    const decoder = new FrameDecoder(1024 * 1024)
    const frames = decoder.push(Buffer.concat(stream.written))
    assert.deepEqual(
      frames.map((f) => (f.piece !== undefined ? `piece ${f.piece.index}` : f.claim !== undefined ? 'claim' : 'have')),
      ['piece 1', 'claim', 'have', 'piece 2'],
    )
    for (const f of frames) if (f.piece !== undefined) releasePiece(f.piece.data)
  })

  test('a closed stream fails each send, and later sends are still tried', async () => {
    const stream = new HeldStream()
    stream.status = 'closed'
    const writer = new FrameWriter(stream as unknown as Stream, 1024)
    await assert.rejects(writer.sendPiece(1, new Uint8Array(10)), { code: 'ABORTED' })
    await assert.rejects(writer.send({ cancel: { index: 1 } }), { code: 'ABORTED' })
    stream.status = 'open'
    await writer.send({ cancel: { index: 2 } })
    assert.equal(stream.written.length, 1)
  })
})
