import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { encodeFrame, encodePieceFrame, FrameDecoder } from '../../../src/swarm/framing.js'

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
})
