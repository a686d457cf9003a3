import { decodeMessage, encodeMessage, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface Hello {
  digest: string
  size: bigint
  bitfield: Uint8Array<ArrayBuffer>
  downloading: boolean
  pieceHashes: Uint8Array<ArrayBuffer>[]
  takesHandoffs: boolean
}

export namespace Hello {
  let _codec: Codec<Hello>

  export const codec = (): Codec<Hello> => {
    if (_codec == null) {
      _codec = message<Hello>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.digest != null && obj.digest !== '')) {
          w.uint32(10)
          w.string(obj.digest)
        }

        if ((obj.size != null && obj.size !== 0n)) {
          w.uint32(16)
          w.uint64(obj.size)
        }

        if ((obj.bitfield != null && obj.bitfield.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.bitfield)
        }

        if ((obj.downloading != null && obj.downloading !== false)) {
          w.uint32(32)
          w.bool(obj.downloading)
        }

        if (obj.pieceHashes != null && obj.pieceHashes.length > 0) {
          for (const value of obj.pieceHashes) {
            w.uint32(42)
            w.bytes(value)
          }
        }

        if ((obj.takesHandoffs != null && obj.takesHandoffs !== false)) {
          w.uint32(48)
          w.bool(obj.takesHandoffs)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          digest: '',
          size: 0n,
          bitfield: uint8ArrayAlloc(0),
          downloading: false,
          pieceHashes: [],
          takesHandoffs: false
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.digest = reader.string()
              break
            }
            case 2: {
              obj.size = reader.uint64()
              break
            }
            case 3: {
              obj.bitfield = reader.bytes()
              break
            }
            case 4: {
              obj.downloading = reader.bool()
              break
            }
            case 5: {
              if (opts.limits?.pieceHashes != null && obj.pieceHashes.length === opts.limits.pieceHashes) {
                throw new MaxLengthError('Decode error - repeated field "pieceHashes" had too many elements')
              }

              obj.pieceHashes.push(reader.bytes())
              break
            }
            case 6: {
              obj.takesHandoffs = reader.bool()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          pieceHashes: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.digest`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.size`,
                value: reader.uint64()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.bitfield`,
                value: reader.bytes()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.downloading`,
                value: reader.bool()
              }
              break
            }
            case 5: {
              if (opts.limits?.pieceHashes != null && obj.pieceHashes === opts.limits.pieceHashes) {
                throw new MaxLengthError('Streaming decode error - repeated field "pieceHashes" had too many elements')
              }

              yield {
                field: `${prefix}.pieceHashes[]`,
                index: obj.pieceHashes,
                value: reader.bytes()
              }

              obj.pieceHashes++

              break
            }
            case 6: {
              yield {
                field: `${prefix}.takesHandoffs`,
                value: reader.bool()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface HelloDigestFieldEvent {
    field: '$.digest'
    value: string
  }

  export interface HelloSizeFieldEvent {
    field: '$.size'
    value: bigint
  }

  export interface HelloBitfieldFieldEvent {
    field: '$.bitfield'
    value: Uint8Array<ArrayBuffer>
  }

  export interface HelloDownloadingFieldEvent {
    field: '$.downloading'
    value: boolean
  }

  export interface HelloPieceHashesFieldEvent {
    field: '$.pieceHashes[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface HelloTakesHandoffsFieldEvent {
    field: '$.takesHandoffs'
    value: boolean
  }

  export function encode (obj: Partial<Hello>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Hello.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Hello>): Hello {
    return decodeMessage(buf, Hello.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Hello>): Generator<HelloDigestFieldEvent | HelloSizeFieldEvent | HelloBitfieldFieldEvent | HelloDownloadingFieldEvent | HelloPieceHashesFieldEvent | HelloTakesHandoffsFieldEvent> {
    return streamMessage(buf, Hello.codec(), opts)
  }
}

export interface Have {
  index: number
  hash: Uint8Array<ArrayBuffer>
  received: boolean
}

export namespace Have {
  let _codec: Codec<Have>

  export const codec = (): Codec<Have> => {
    if (_codec == null) {
      _codec = message<Have>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.index != null && obj.index !== 0)) {
          w.uint32(8)
          w.uint32(obj.index)
        }

        if ((obj.hash != null && obj.hash.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.hash)
        }

        if ((obj.received != null && obj.received !== false)) {
          w.uint32(24)
          w.bool(obj.received)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          index: 0,
          hash: uint8ArrayAlloc(0),
          received: false
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.index = reader.uint32()
              break
            }
            case 2: {
              obj.hash = reader.bytes()
              break
            }
            case 3: {
              obj.received = reader.bool()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.index`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.hash`,
                value: reader.bytes()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.received`,
                value: reader.bool()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface HaveIndexFieldEvent {
    field: '$.index'
    value: number
  }

  export interface HaveHashFieldEvent {
    field: '$.hash'
    value: Uint8Array<ArrayBuffer>
  }

  export interface HaveReceivedFieldEvent {
    field: '$.received'
    value: boolean
  }

  export function encode (obj: Partial<Have>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Have.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Have>): Have {
    return decodeMessage(buf, Have.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Have>): Generator<HaveIndexFieldEvent | HaveHashFieldEvent | HaveReceivedFieldEvent> {
    return streamMessage(buf, Have.codec(), opts)
  }
}

export interface Claim {
  index: number
  queued: boolean
  takeover: boolean
  yieldTo: string
  handoff: boolean
}

export namespace Claim {
  let _codec: Codec<Claim>

  export const codec = (): Codec<Claim> => {
    if (_codec == null) {
      _codec = message<Claim>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.index != null && obj.index !== 0)) {
          w.uint32(8)
          w.uint32(obj.index)
        }

        if ((obj.queued != null && obj.queued !== false)) {
          w.uint32(16)
          w.bool(obj.queued)
        }

        if ((obj.takeover != null && obj.takeover !== false)) {
          w.uint32(24)
          w.bool(obj.takeover)
        }

        if ((obj.yieldTo != null && obj.yieldTo !== '')) {
          w.uint32(34)
          w.string(obj.yieldTo)
        }

        if ((obj.handoff != null && obj.handoff !== false)) {
          w.uint32(40)
          w.bool(obj.handoff)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          index: 0,
          queued: false,
          takeover: false,
          yieldTo: '',
          handoff: false
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.index = reader.uint32()
              break
            }
            case 2: {
              obj.queued = reader.bool()
              break
            }
            case 3: {
              obj.takeover = reader.bool()
              break
            }
            case 4: {
              obj.yieldTo = reader.string()
              break
            }
            case 5: {
              obj.handoff = reader.bool()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.index`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.queued`,
                value: reader.bool()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.takeover`,
                value: reader.bool()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.yieldTo`,
                value: reader.string()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.handoff`,
                value: reader.bool()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface ClaimIndexFieldEvent {
    field: '$.index'
    value: number
  }

  export interface ClaimQueuedFieldEvent {
    field: '$.queued'
    value: boolean
  }

  export interface ClaimTakeoverFieldEvent {
    field: '$.takeover'
    value: boolean
  }

  export interface ClaimYieldToFieldEvent {
    field: '$.yieldTo'
    value: string
  }

  export interface ClaimHandoffFieldEvent {
    field: '$.handoff'
    value: boolean
  }

  export function encode (obj: Partial<Claim>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Claim.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Claim>): Claim {
    return decodeMessage(buf, Claim.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Claim>): Generator<ClaimIndexFieldEvent | ClaimQueuedFieldEvent | ClaimTakeoverFieldEvent | ClaimYieldToFieldEvent | ClaimHandoffFieldEvent> {
    return streamMessage(buf, Claim.codec(), opts)
  }
}

export interface Request {
  index: number
}

export namespace Request {
  let _codec: Codec<Request>

  export const codec = (): Codec<Request> => {
    if (_codec == null) {
      _codec = message<Request>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.index != null && obj.index !== 0)) {
          w.uint32(8)
          w.uint32(obj.index)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          index: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.index = reader.uint32()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.index`,
                value: reader.uint32()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface RequestIndexFieldEvent {
    field: '$.index'
    value: number
  }

  export function encode (obj: Partial<Request>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Request.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Request>): Request {
    return decodeMessage(buf, Request.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Request>): Generator<RequestIndexFieldEvent> {
    return streamMessage(buf, Request.codec(), opts)
  }
}

export interface Piece {
  index: number
  data: Uint8Array<ArrayBuffer>
}

export namespace Piece {
  let _codec: Codec<Piece>

  export const codec = (): Codec<Piece> => {
    if (_codec == null) {
      _codec = message<Piece>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.index != null && obj.index !== 0)) {
          w.uint32(8)
          w.uint32(obj.index)
        }

        if ((obj.data != null && obj.data.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.data)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          index: 0,
          data: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.index = reader.uint32()
              break
            }
            case 2: {
              obj.data = reader.bytes()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.index`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.data`,
                value: reader.bytes()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface PieceIndexFieldEvent {
    field: '$.index'
    value: number
  }

  export interface PieceDataFieldEvent {
    field: '$.data'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<Piece>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Piece.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Piece>): Piece {
    return decodeMessage(buf, Piece.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Piece>): Generator<PieceIndexFieldEvent | PieceDataFieldEvent> {
    return streamMessage(buf, Piece.codec(), opts)
  }
}

export interface Cancel {
  index: number
}

export namespace Cancel {
  let _codec: Codec<Cancel>

  export const codec = (): Codec<Cancel> => {
    if (_codec == null) {
      _codec = message<Cancel>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.index != null && obj.index !== 0)) {
          w.uint32(8)
          w.uint32(obj.index)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          index: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.index = reader.uint32()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.index`,
                value: reader.uint32()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface CancelIndexFieldEvent {
    field: '$.index'
    value: number
  }

  export function encode (obj: Partial<Cancel>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Cancel.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Cancel>): Cancel {
    return decodeMessage(buf, Cancel.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Cancel>): Generator<CancelIndexFieldEvent> {
    return streamMessage(buf, Cancel.codec(), opts)
  }
}

export interface Reject {
  index: number
  busy: boolean
  sending: boolean
}

export namespace Reject {
  let _codec: Codec<Reject>

  export const codec = (): Codec<Reject> => {
    if (_codec == null) {
      _codec = message<Reject>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.index != null && obj.index !== 0)) {
          w.uint32(8)
          w.uint32(obj.index)
        }

        if ((obj.busy != null && obj.busy !== false)) {
          w.uint32(16)
          w.bool(obj.busy)
        }

        if ((obj.sending != null && obj.sending !== false)) {
          w.uint32(24)
          w.bool(obj.sending)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          index: 0,
          busy: false,
          sending: false
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.index = reader.uint32()
              break
            }
            case 2: {
              obj.busy = reader.bool()
              break
            }
            case 3: {
              obj.sending = reader.bool()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.index`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.busy`,
                value: reader.bool()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.sending`,
                value: reader.bool()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface RejectIndexFieldEvent {
    field: '$.index'
    value: number
  }

  export interface RejectBusyFieldEvent {
    field: '$.busy'
    value: boolean
  }

  export interface RejectSendingFieldEvent {
    field: '$.sending'
    value: boolean
  }

  export function encode (obj: Partial<Reject>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Reject.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Reject>): Reject {
    return decodeMessage(buf, Reject.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Reject>): Generator<RejectIndexFieldEvent | RejectBusyFieldEvent | RejectSendingFieldEvent> {
    return streamMessage(buf, Reject.codec(), opts)
  }
}

export interface PeerAddrs {
  id: Uint8Array<ArrayBuffer>
  addrs: Uint8Array<ArrayBuffer>[]
}

export namespace PeerAddrs {
  let _codec: Codec<PeerAddrs>

  export const codec = (): Codec<PeerAddrs> => {
    if (_codec == null) {
      _codec = message<PeerAddrs>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.id != null && obj.id.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.id)
        }

        if (obj.addrs != null && obj.addrs.length > 0) {
          for (const value of obj.addrs) {
            w.uint32(18)
            w.bytes(value)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          id: uint8ArrayAlloc(0),
          addrs: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.id = reader.bytes()
              break
            }
            case 2: {
              if (opts.limits?.addrs != null && obj.addrs.length === opts.limits.addrs) {
                throw new MaxLengthError('Decode error - repeated field "addrs" had too many elements')
              }

              obj.addrs.push(reader.bytes())
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          addrs: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.id`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              if (opts.limits?.addrs != null && obj.addrs === opts.limits.addrs) {
                throw new MaxLengthError('Streaming decode error - repeated field "addrs" had too many elements')
              }

              yield {
                field: `${prefix}.addrs[]`,
                index: obj.addrs,
                value: reader.bytes()
              }

              obj.addrs++

              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface PeerAddrsIdFieldEvent {
    field: '$.id'
    value: Uint8Array<ArrayBuffer>
  }

  export interface PeerAddrsAddrsFieldEvent {
    field: '$.addrs[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<PeerAddrs>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, PeerAddrs.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<PeerAddrs>): PeerAddrs {
    return decodeMessage(buf, PeerAddrs.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<PeerAddrs>): Generator<PeerAddrsIdFieldEvent | PeerAddrsAddrsFieldEvent> {
    return streamMessage(buf, PeerAddrs.codec(), opts)
  }
}

export interface Peers {
  peers: PeerAddrs[]
}

export namespace Peers {
  let _codec: Codec<Peers>

  export const codec = (): Codec<Peers> => {
    if (_codec == null) {
      _codec = message<Peers>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.peers != null && obj.peers.length > 0) {
          for (const value of obj.peers) {
            w.uint32(10)
            PeerAddrs.codec().encode(value, w)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          peers: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              if (opts.limits?.peers != null && obj.peers.length === opts.limits.peers) {
                throw new MaxLengthError('Decode error - repeated field "peers" had too many elements')
              }

              obj.peers.push(PeerAddrs.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.peers$
              }))
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          peers: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              if (opts.limits?.peers != null && obj.peers === opts.limits.peers) {
                throw new MaxLengthError('Streaming decode error - repeated field "peers" had too many elements')
              }

              for (const evt of PeerAddrs.codec().stream(reader, reader.uint32(), `${prefix}.peers[]`, {
                limits: opts.limits?.peers$
              })) {
                yield {
                  ...evt,
                  index: obj.peers
                }
              }

              obj.peers++

              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface PeersPeersIdFieldEvent {
    field: '$.peers[].id'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface PeersPeersAddrsFieldEvent {
    field: '$.peers[].addrs[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<Peers>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Peers.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Peers>): Peers {
    return decodeMessage(buf, Peers.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Peers>): Generator<PeersPeersIdFieldEvent | PeersPeersAddrsFieldEvent> {
    return streamMessage(buf, Peers.codec(), opts)
  }
}

export interface Message {
  hello?: Hello
  have?: Have
  claim?: Claim
  request?: Request
  piece?: Piece
  cancel?: Cancel
  reject?: Reject
  peers?: Peers
}

export namespace Message {
  let _codec: Codec<Message>

  export const codec = (): Codec<Message> => {
    if (_codec == null) {
      _codec = message<Message>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.hello != null) {
          w.uint32(10)
          Hello.codec().encode(obj.hello, w)
        }

        if (obj.have != null) {
          w.uint32(18)
          Have.codec().encode(obj.have, w)
        }

        if (obj.claim != null) {
          w.uint32(26)
          Claim.codec().encode(obj.claim, w)
        }

        if (obj.request != null) {
          w.uint32(34)
          Request.codec().encode(obj.request, w)
        }

        if (obj.piece != null) {
          w.uint32(42)
          Piece.codec().encode(obj.piece, w)
        }

        if (obj.cancel != null) {
          w.uint32(50)
          Cancel.codec().encode(obj.cancel, w)
        }

        if (obj.reject != null) {
          w.uint32(58)
          Reject.codec().encode(obj.reject, w)
        }

        if (obj.peers != null) {
          w.uint32(66)
          Peers.codec().encode(obj.peers, w)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {}

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.hello = Hello.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.hello
              })
              break
            }
            case 2: {
              obj.have = Have.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.have
              })
              break
            }
            case 3: {
              obj.claim = Claim.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.claim
              })
              break
            }
            case 4: {
              obj.request = Request.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.request
              })
              break
            }
            case 5: {
              obj.piece = Piece.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.piece
              })
              break
            }
            case 6: {
              obj.cancel = Cancel.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.cancel
              })
              break
            }
            case 7: {
              obj.reject = Reject.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.reject
              })
              break
            }
            case 8: {
              obj.peers = Peers.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.peers
              })
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield * Hello.codec().stream(reader, reader.uint32(), `${prefix}.hello`, {
                limits: opts.limits?.hello
              })

              break
            }
            case 2: {
              yield * Have.codec().stream(reader, reader.uint32(), `${prefix}.have`, {
                limits: opts.limits?.have
              })

              break
            }
            case 3: {
              yield * Claim.codec().stream(reader, reader.uint32(), `${prefix}.claim`, {
                limits: opts.limits?.claim
              })

              break
            }
            case 4: {
              yield * Request.codec().stream(reader, reader.uint32(), `${prefix}.request`, {
                limits: opts.limits?.request
              })

              break
            }
            case 5: {
              yield * Piece.codec().stream(reader, reader.uint32(), `${prefix}.piece`, {
                limits: opts.limits?.piece
              })

              break
            }
            case 6: {
              yield * Cancel.codec().stream(reader, reader.uint32(), `${prefix}.cancel`, {
                limits: opts.limits?.cancel
              })

              break
            }
            case 7: {
              yield * Reject.codec().stream(reader, reader.uint32(), `${prefix}.reject`, {
                limits: opts.limits?.reject
              })

              break
            }
            case 8: {
              yield * Peers.codec().stream(reader, reader.uint32(), `${prefix}.peers`, {
                limits: opts.limits?.peers
              })

              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface MessageHelloDigestFieldEvent {
    field: '$.hello.digest'
    value: string
  }

  export interface MessageHelloSizeFieldEvent {
    field: '$.hello.size'
    value: bigint
  }

  export interface MessageHelloBitfieldFieldEvent {
    field: '$.hello.bitfield'
    value: Uint8Array<ArrayBuffer>
  }

  export interface MessageHelloDownloadingFieldEvent {
    field: '$.hello.downloading'
    value: boolean
  }

  export interface MessageHelloPieceHashesFieldEvent {
    field: '$.hello.pieceHashes[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface MessageHelloTakesHandoffsFieldEvent {
    field: '$.hello.takesHandoffs'
    value: boolean
  }

  export interface MessageHaveIndexFieldEvent {
    field: '$.have.index'
    value: number
  }

  export interface MessageHaveHashFieldEvent {
    field: '$.have.hash'
    value: Uint8Array<ArrayBuffer>
  }

  export interface MessageHaveReceivedFieldEvent {
    field: '$.have.received'
    value: boolean
  }

  export interface MessageClaimIndexFieldEvent {
    field: '$.claim.index'
    value: number
  }

  export interface MessageClaimQueuedFieldEvent {
    field: '$.claim.queued'
    value: boolean
  }

  export interface MessageClaimTakeoverFieldEvent {
    field: '$.claim.takeover'
    value: boolean
  }

  export interface MessageClaimYieldToFieldEvent {
    field: '$.claim.yieldTo'
    value: string
  }

  export interface MessageClaimHandoffFieldEvent {
    field: '$.claim.handoff'
    value: boolean
  }

  export interface MessageRequestIndexFieldEvent {
    field: '$.request.index'
    value: number
  }

  export interface MessagePieceIndexFieldEvent {
    field: '$.piece.index'
    value: number
  }

  export interface MessagePieceDataFieldEvent {
    field: '$.piece.data'
    value: Uint8Array<ArrayBuffer>
  }

  export interface MessageCancelIndexFieldEvent {
    field: '$.cancel.index'
    value: number
  }

  export interface MessageRejectIndexFieldEvent {
    field: '$.reject.index'
    value: number
  }

  export interface MessageRejectBusyFieldEvent {
    field: '$.reject.busy'
    value: boolean
  }

  export interface MessageRejectSendingFieldEvent {
    field: '$.reject.sending'
    value: boolean
  }

  export interface MessagePeersPeersIdFieldEvent {
    field: '$.peers.peers[].id'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface MessagePeersPeersAddrsFieldEvent {
    field: '$.peers.peers[].addrs[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<Message>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Message.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Message>): Message {
    return decodeMessage(buf, Message.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Message>): Generator<MessageHelloDigestFieldEvent | MessageHelloSizeFieldEvent | MessageHelloBitfieldFieldEvent | MessageHelloDownloadingFieldEvent | MessageHelloPieceHashesFieldEvent | MessageHelloTakesHandoffsFieldEvent | MessageHaveIndexFieldEvent | MessageHaveHashFieldEvent | MessageHaveReceivedFieldEvent | MessageClaimIndexFieldEvent | MessageClaimQueuedFieldEvent | MessageClaimTakeoverFieldEvent | MessageClaimYieldToFieldEvent | MessageClaimHandoffFieldEvent | MessageRequestIndexFieldEvent | MessagePieceIndexFieldEvent | MessagePieceDataFieldEvent | MessageCancelIndexFieldEvent | MessageRejectIndexFieldEvent | MessageRejectBusyFieldEvent | MessageRejectSendingFieldEvent | MessagePeersPeersIdFieldEvent | MessagePeersPeersAddrsFieldEvent> {
    return streamMessage(buf, Message.codec(), opts)
  }
}
