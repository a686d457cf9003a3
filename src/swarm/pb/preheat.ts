import { decodeMessage, encodeMessage, message, streamMessage } from 'protons-runtime'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface PreheatRequest {
  ref: string
  platform: string
  allPlatforms: boolean
}

export namespace PreheatRequest {
  let _codec: Codec<PreheatRequest>

  export const codec = (): Codec<PreheatRequest> => {
    if (_codec == null) {
      _codec = message<PreheatRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.ref != null && obj.ref !== '')) {
          w.uint32(10)
          w.string(obj.ref)
        }

        if ((obj.platform != null && obj.platform !== '')) {
          w.uint32(18)
          w.string(obj.platform)
        }

        if ((obj.allPlatforms != null && obj.allPlatforms !== false)) {
          w.uint32(24)
          w.bool(obj.allPlatforms)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          ref: '',
          platform: '',
          allPlatforms: false
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.ref = reader.string()
              break
            }
            case 2: {
              obj.platform = reader.string()
              break
            }
            case 3: {
              obj.allPlatforms = reader.bool()
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
                field: `${prefix}.ref`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.platform`,
                value: reader.string()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.allPlatforms`,
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

  export interface PreheatRequestRefFieldEvent {
    field: '$.ref'
    value: string
  }

  export interface PreheatRequestPlatformFieldEvent {
    field: '$.platform'
    value: string
  }

  export interface PreheatRequestAllPlatformsFieldEvent {
    field: '$.allPlatforms'
    value: boolean
  }

  export function encode (obj: Partial<PreheatRequest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, PreheatRequest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<PreheatRequest>): PreheatRequest {
    return decodeMessage(buf, PreheatRequest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<PreheatRequest>): Generator<PreheatRequestRefFieldEvent | PreheatRequestPlatformFieldEvent | PreheatRequestAllPlatformsFieldEvent> {
    return streamMessage(buf, PreheatRequest.codec(), opts)
  }
}

export interface PreheatResponse {
  accepted: boolean
  error: string
}

export namespace PreheatResponse {
  let _codec: Codec<PreheatResponse>

  export const codec = (): Codec<PreheatResponse> => {
    if (_codec == null) {
      _codec = message<PreheatResponse>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.accepted != null && obj.accepted !== false)) {
          w.uint32(8)
          w.bool(obj.accepted)
        }

        if ((obj.error != null && obj.error !== '')) {
          w.uint32(18)
          w.string(obj.error)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          accepted: false,
          error: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.accepted = reader.bool()
              break
            }
            case 2: {
              obj.error = reader.string()
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
                field: `${prefix}.accepted`,
                value: reader.bool()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.error`,
                value: reader.string()
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

  export interface PreheatResponseAcceptedFieldEvent {
    field: '$.accepted'
    value: boolean
  }

  export interface PreheatResponseErrorFieldEvent {
    field: '$.error'
    value: string
  }

  export function encode (obj: Partial<PreheatResponse>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, PreheatResponse.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<PreheatResponse>): PreheatResponse {
    return decodeMessage(buf, PreheatResponse.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<PreheatResponse>): Generator<PreheatResponseAcceptedFieldEvent | PreheatResponseErrorFieldEvent> {
    return streamMessage(buf, PreheatResponse.codec(), opts)
  }
}
