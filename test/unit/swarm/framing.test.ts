import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { Stream } from '@libp2p/interface'
import { encodeFrame, encodePieceFrame, FrameDecoder, FrameWriter } from '../../../src/swarm/framing.js'

/** A stream whose write buffer drains only when the test says so. */
class FakeStream extends EventTarget {
  status = 'open'
  writeBufferLength = 0
  readonly written: Uint8Array[] = []
  send(data: Uint8Array): boolean {
    this.written.push(data)
    this.writeBufferLength += data.byteLength
    return this.writeBufferLength <= 1024
  }
  drain(): void {
    this.writeBufferLength = 0
    this.dispatchEvent(new Event('drain'))
  }
}

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
      encodeFrame({ have: { index: 3, hash: new Uint8Array(32).fill(7) } }),
      ...encodePieceFrame(9, new Uint8Array(70_000).fill(1)),
      encodeFrame({ claim: { index: 4 } }),
    ]
    const all = Buffer.concat(frames)
    const decoder = new FrameDecoder(1024 * 1024)
    const got = []
    for (let off = 0; off < all.length; off += 777) got.push(...decoder.push(all.subarray(off, off + 777)))
    assert.equal(got.length, 3)
    assert.equal(got[0]?.have?.index, 3)
    assert.equal(got[1]?.piece?.index, 9)
    assert.equal(got[1]?.piece?.data.byteLength, 70_000)
    assert.equal(got[2]?.claim?.index, 4)
  })

  test('a frame over the limit is refused before it is buffered', () => {
    const decoder = new FrameDecoder(1000)
    const [head] = encodePieceFrame(1, new Uint8Array(5000))
    assert.throws(() => decoder.push(head), { code: 'SIZE_INVALID' })
  })

  test('control frames overtake queued pieces, never split a frame, and pieces keep their backpressure', async () => {
    const stream = new FakeStream()
    const writer = new FrameWriter(stream as unknown as Stream, 1024)
    const piece = (i: number): Uint8Array => new Uint8Array(5000).fill(i)
    const first = writer.sendPiece(1, piece(1))
    const second = writer.sendPiece(2, piece(2))
    await new Promise((r) => setImmediate(r))
    // Piece 1 is in the stream, over the high-water mark: piece 2 waits for drain.
    await writer.send({ claim: { index: 7 } })
    await writer.send({ cancel: { index: 3 } })
    const third = writer.sendPiece(3, piece(3), () => false)
    stream.drain()
    await first
    await new Promise((r) => setImmediate(r))
    stream.drain()
    await second
    assert.equal(await third, false, 'a piece no longer wanted at its turn is not sent')
    const decoder = new FrameDecoder(1024 * 1024)
    const got = stream.written.flatMap((chunk) => decoder.push(chunk))
    assert.deepEqual(
      got.map((m) =>
        m.piece ? `piece ${m.piece.index}` : m.claim ? `claim ${m.claim.index}` : `cancel ${m.cancel?.index}`,
      ),
      ['piece 1', 'claim 7', 'cancel 3', 'piece 2'],
    )
    assert.equal(got[3]?.piece?.data.byteLength, 5000)
  })

  test('a control frame on a closed stream is refused', async () => {
    const stream = new FakeStream()
    stream.status = 'closed'
    const writer = new FrameWriter(stream as unknown as Stream, 1024)
    await assert.rejects(writer.send({ have: { index: 1, hash: new Uint8Array(32) } }), { code: 'ABORTED' })
  })
})
