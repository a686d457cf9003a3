import type { Peer, PeerStore } from '@libp2p/interface'
import { RecentMap } from '../util/recent.js'

/** How long a (peer, protocol) merge is remembered, and how many are. */
const KEPT_MS = 10 * 60_000
const MAX_KEPT = 2048

/**
 * js-libp2p merges a stream's protocol into the peer store every time a stream of it opens, at
 * both ends (libp2p/src/connection.ts), and waits for it before the stream is handed over: a
 * per-peer write lock, a protobuf decode and encode of the whole peer record, a datastore put.
 * The piece protocol opens a stream per blob and peer, so a ten-node herd pulling a five-blob
 * image made ~90 of these per daemon, each after the first a no-op.
 *
 * This lets the first merge of `{ protocols: [p] }` for a peer through, for the protocols named,
 * and answers a repeat within KEPT_MS with the record that first merge returned, touching nothing
 * (libp2p's connection, the only caller that merges a lone protocol, discards the answer). Any
 * other merge (addresses, metadata, several protocols) goes through unchanged. A peer deleted from
 * the store meanwhile lacks the protocol there until the entry expires: nothing reads it (the
 * exchange dials by protocol and registers no topology).
 */
export function skipRepeatedProtocolMerges(store: PeerStore, protocols: ReadonlySet<string>): void {
  const merge = store.merge.bind(store)
  const merged = new RecentMap<Peer>(KEPT_MS, MAX_KEPT)
  store.merge = async (id, data, options) => {
    const only = data.protocols
    if (only === undefined || only.length !== 1 || Object.keys(data).length !== 1 || !protocols.has(only[0] ?? '')) {
      return merge(id, data, options)
    }
    const key = `${id.toString()}\n${only[0]}`
    const seen = merged.get(key)
    if (seen !== undefined) return seen
    const peer = await merge(id, data, options)
    merged.set(key, peer)
    return peer
  }
}
