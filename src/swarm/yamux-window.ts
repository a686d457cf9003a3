import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'

/** The fields and methods of a yamux stream that its window update uses (private in its types). */
interface WindowInternals {
  state: StreamState
  recvWindow: number
  recvWindowCapacity: number
  maxStreamWindowSize: number
  epochStart: number
  getRTT(): number
  getSendFlags(): number
  sendFrame(header: { type: number; flag: number; streamID: number; length: number }): boolean
  streamId: number
}

/** Yamux's window update frame type (its spec: 0x1). */
const WINDOW_UPDATE = 1

/**
 * The receive window each stream grants its sender with its first update, in bytes. The yamux spec
 * fixes a new stream's window at 256 KiB; a receiver may grant more at any time. 4 MiB holds four
 * pieces (1 MiB each) in flight on one session, and costs no memory beyond what Shoal's requests
 * already bound: a peer sends only pieces this node asked for.
 */
export const STREAM_WINDOW = 4 * 1024 * 1024

/** The library's own window update (one after every data frame), for tests of mixed peers. */
export const libraryWindowUpdate = YamuxStream.prototype.sendWindowUpdate

/**
 * A yamux window update once half the receive window is used, as go-yamux and rust-yamux send it,
 * and a window of `STREAM_WINDOW` granted by the stream's first update.
 *
 * @chainsafe/libp2p-yamux 8 answers every data frame it receives with a window update, so each
 * Have, Claim or request (a frame of a few dozen bytes) cost its sender a frame back: in lab P1
 * each daemon sent ~5 000 window updates and received ~5 500, as many frames as all its data frames
 * together, each its own Noise message, system call and TCP segment. When to grant credit, and how
 * much, is the receiver's choice in the yamux spec (as in HTTP/2), so peers of any implementation,
 * older Shoal daemons included, see only fewer, larger updates. The window every stream starts
 * with stays the spec's 256 KiB at both ends (the library assumes its peer's window is its own
 * initial one; raising that setting breaks streams with peers that did not).
 *
 * Unchanged: a frame with flags (SYN, ACK) goes at once; a paused stream sends none and restarts its
 * epoch; the window doubles up to its maximum when the last update was less than four round trips
 * ago (now measured from one update to the next, as go-yamux does). No stall: the sender stops only
 * when its credit is 0, and then the whole window is used here, which is more than half.
 */
function sendWindowUpdateAtHalf(this: WindowInternals): void {
  if (this.state === StreamState.Paused) {
    this.epochStart = Date.now()
    return
  }
  const flags = this.getSendFlags()
  const now = Date.now()
  const granted = Math.min(STREAM_WINDOW, this.maxStreamWindowSize)
  if (this.recvWindow < granted) {
    // The stream's first update: it grants the larger window.
    this.recvWindow = granted
  } else {
    if (flags === 0 && this.recvWindow - this.recvWindowCapacity < this.recvWindow / 2) return
    const rtt = this.getRTT()
    if (flags === 0 && rtt > -1 && now - this.epochStart <= rtt * 4) {
      this.recvWindow = Math.min(this.recvWindow * 2, this.maxStreamWindowSize)
    }
  }
  const delta = this.recvWindow - this.recvWindowCapacity
  this.recvWindowCapacity = this.recvWindow
  this.epochStart = now
  this.sendFrame({ type: WINDOW_UPDATE, flag: flags, streamID: this.streamId, length: delta })
}

let installed = false

/**
 * Put `sendWindowUpdateAtHalf` on every yamux stream of this process (once; idempotent). Left as
 * it is when the library's stream does not look as expected (another version's internals): the
 * streams then send their updates as the library does, nothing else changes.
 */
export function installHalfWindowUpdates(): boolean {
  if (installed) return true
  const proto = YamuxStream.prototype as unknown as Record<string, unknown>
  const src = typeof proto.sendWindowUpdate === 'function' ? String(proto.sendWindowUpdate) : ''
  // The method this replaces: the same fields, the same doubling, no threshold.
  const expected = ['recvWindowCapacity', 'recvWindow', 'epochStart', 'getRTT', 'getSendFlags', 'sendFrame']
  if (typeof proto.getSendFlags !== 'function' || !expected.every((name) => src.includes(name))) return false
  Object.defineProperty(proto, 'sendWindowUpdate', {
    value: sendWindowUpdateAtHalf,
    configurable: true,
    writable: true,
  })
  installed = true
  return true
}
