import type { Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { BUFFER_POOL_IDLE_MS, PIECE_SIZE_CLASSES } from '../constants.js'
import { ShoalError } from '../errors.js'
import { BufferPool } from '../util/buffer-pool.js'
import { Message } from './pb/pieces.js'

function varint(n: number, out: number[]): void {
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80)
    n = Math.floor(n / 0x80)
  }
  out.push(n)
}

/** The fields of a Message, each a kind of message (a message carries one, or a Hello and more). */
export const MESSAGE_KINDS = ['hello', 'have', 'claim', 'request', 'piece', 'cancel', 'reject', 'peers'] as const
export type MessageKind = (typeof MESSAGE_KINDS)[number]
/** Messages counted by kind (sent or received), for the swarm's metrics. */
export type MessageCounts = Record<MessageKind, number>

export function messageCounts(): MessageCounts {
  return { hello: 0, have: 0, claim: 0, request: 0, piece: 0, cancel: 0, reject: 0, peers: 0 }
}

/** Adds each kind `msg` carries to `counts`. */
export function countMessage(counts: MessageCounts, msg: Message): void {
  for (const kind of MESSAGE_KINDS) if (msg[kind] !== undefined) counts[kind]++
}

/** Frames: unsigned varint length, then one encoded Message. */
export function encodeFrame(msg: Message): Uint8Array {
  const body = Message.encode(msg)
  const head: number[] = []
  varint(body.byteLength, head)
  const out = new Uint8Array(head.length + body.byteLength)
  out.set(head, 0)
  out.set(body, head.length)
  return out
}

/**
 * A Piece frame as two parts, header and data, so a 4 MiB piece is never copied: the bytes are
 * exactly what `encodeFrame({ piece: { index, data } })` gives (Message field 5, Piece fields
 * 1 and 2).
 */
export function encodePieceFrame(index: number, data: Uint8Array): [Uint8Array, Uint8Array] {
  const piece: number[] = []
  if (index !== 0) {
    piece.push(0x08)
    varint(index, piece)
  }
  if (data.byteLength > 0) {
    piece.push(0x12)
    varint(data.byteLength, piece)
  }
  const pieceLen = piece.length + data.byteLength
  const msg: number[] = [0x2a]
  varint(pieceLen, msg)
  const head: number[] = []
  varint(msg.length + pieceLen, head)
  return [Uint8Array.from([...head, ...msg, ...piece]), data]
}

/** Frames this large are assembled in a buffer of `pieceFrames` (pieces, in practice). */
const POOLED_FRAME = 1024 * 1024

/**
 * Buffers for received piece frames (one class per piece size, a few bytes over for framing). A
 * piece's data is a view into one; whoever stores the piece gives it back (`releasePiece`).
 */
const pieceFrames = new BufferPool(
  PIECE_SIZE_CLASSES.map((size) => size + 64),
  24 * 1024 * 1024,
  BUFFER_POOL_IDLE_MS,
)

/**
 * A received piece's data is no longer read by anyone: its frame buffer may be used again. Only
 * for `Piece.data` from a `FrameDecoder`, once, and only when it is certain no reader is left.
 */
export function releasePiece(data: Uint8Array): void {
  pieceFrames.give(data)
}

/** Copies `src` (a buffer or a list of them) into `dst` at `offset`. */
function copyInto(dst: Uint8Array, offset: number, src: Uint8Array | Uint8ArrayList): void {
  if (src instanceof Uint8Array) {
    dst.set(src, offset)
    return
  }
  for (const b of src) {
    dst.set(b, offset)
    offset += b.byteLength
  }
}

/**
 * Splits a byte stream into messages; a frame over `maxFrame` is a protocol error. A large frame
 * is copied straight into one buffer as it arrives (from `pieceFrames`) instead of being kept as
 * a list of socket reads and joined at the end.
 */
export class FrameDecoder {
  private readonly buf = new Uint8ArrayList()
  /** The large frame being assembled, and how much of it has come. */
  private frame: Uint8Array | undefined
  private filled = 0

  constructor(private readonly maxFrame: number) {}

  /** Bytes of a frame received in part. */
  get buffered(): number {
    return this.buf.byteLength + this.filled
  }

  push(chunk: Uint8Array | Uint8ArrayList): Message[] {
    const out: Message[] = []
    if (this.frame !== undefined) {
      const frame = this.frame
      const n = Math.min(chunk.byteLength, frame.byteLength - this.filled)
      copyInto(frame, this.filled, chunk instanceof Uint8Array ? chunk.subarray(0, n) : chunk.sublist(0, n))
      this.filled += n
      if (this.filled < frame.byteLength) return out
      this.frame = undefined
      this.filled = 0
      out.push(Message.decode(frame))
      if (n === chunk.byteLength) return out
      chunk = chunk instanceof Uint8Array ? chunk.subarray(n) : chunk.sublist(n)
    }
    this.buf.append(chunk)
    for (;;) {
      let len = 0
      let shift = 0
      let i = 0
      let complete = false
      while (i < this.buf.byteLength && i < 5) {
        const b = this.buf.get(i)
        len += (b & 0x7f) * 2 ** shift
        shift += 7
        i++
        if ((b & 0x80) === 0) {
          complete = true
          break
        }
      }
      if (!complete) {
        if (i >= 5) throw new ShoalError('SIZE_INVALID', 'bad frame length')
        return out
      }
      if (len > this.maxFrame) throw new ShoalError('SIZE_INVALID', `frame of ${len} bytes is over the limit`)
      if (len >= POOLED_FRAME) {
        // Also when the whole frame is here already (a reader that fell behind gets many socket
        // reads at once): joining the list would take a fresh buffer (in the p2p bench, 44 % of
        // the pieces received).
        const frame = pieceFrames.take(len)
        const have = Math.min(len, this.buf.byteLength - i)
        copyInto(frame, 0, this.buf.sublist(i, i + have))
        this.buf.consume(i + have)
        if (have < len) {
          this.frame = frame
          this.filled = have
          return out
        }
        out.push(Message.decode(frame))
        continue
      }
      if (this.buf.byteLength < i + len) return out
      const frame = this.buf.subarray(i, i + len)
      this.buf.consume(i + len)
      out.push(Message.decode(frame))
    }
  }
}

interface Job {
  parts: () => Uint8Array[]
  resolve: () => void
  reject: (err: unknown) => void
}

/**
 * Serialised sends with real backpressure: libp2p 3 streams queue in memory once `send` returns
 * false, so every send waits until the write buffer is below `highWater`. Control messages (Have,
 * Claim, Reject, …) go ahead of pieces still waiting for their turn (never into the middle of one):
 * behind a few queued 4 MiB pieces to a slow peer they waited seconds, and a Claim that comes late
 * lets two nodes fetch one piece from the origin.
 */
export class FrameWriter {
  private readonly control: Job[] = []
  private readonly pieces: Job[] = []
  private writing = false

  constructor(
    private readonly stream: Stream,
    private readonly highWater: number,
    /** Where the messages written are counted by kind (when they go into the stream). */
    private readonly sent: MessageCounts = messageCounts(),
  ) {}

  send(msg: Message): Promise<void> {
    const frame = encodeFrame(msg)
    return this.enqueue(this.control, () => {
      countMessage(this.sent, msg)
      return [frame]
    })
  }

  /**
   * `wanted` is asked when the piece's turn to be written comes (it may wait behind others):
   * false (the requester cancelled meanwhile) skips it. Resolves whether it was sent.
   */
  async sendPiece(index: number, data: Uint8Array, wanted: () => boolean = () => true): Promise<boolean> {
    let sent = false
    await this.enqueue(this.pieces, () => {
      if (!wanted()) return []
      sent = true
      this.sent.piece++
      return encodePieceFrame(index, data)
    })
    return sent
  }

  private enqueue(queue: Job[], parts: () => Uint8Array[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      queue.push({ parts, resolve, reject })
      if (!this.writing) void this.drainQueues()
    })
  }

  private async drainQueues(): Promise<void> {
    this.writing = true
    try {
      for (let job = this.control.shift() ?? this.pieces.shift(); job !== undefined; ) {
        try {
          await this.write(job.parts)
          job.resolve()
        } catch (err) {
          job.reject(err)
        }
        job = this.control.shift() ?? this.pieces.shift()
      }
    } finally {
      this.writing = false
    }
  }

  private async write(partsOf: () => Uint8Array[]): Promise<void> {
    if (this.stream.status !== 'open') throw new ShoalError('ABORTED', 'stream closed')
    for (const part of partsOf()) if (part.byteLength > 0) this.stream.send(part)
    while (this.stream.writeBufferLength > this.highWater && this.stream.status === 'open') {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.stream.removeEventListener('drain', done)
          this.stream.removeEventListener('close', done)
          resolve()
        }
        this.stream.addEventListener('drain', done)
        this.stream.addEventListener('close', done)
      })
    }
  }
}
