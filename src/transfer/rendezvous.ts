import { createHash } from 'node:crypto'

/**
 * Rendezvous (highest random weight) score of a downloader for a piece: the downloader with the
 * highest score owns the piece (fetches it from the origin), and of claimants that race, the
 * highest keeps it. Every node computes the same scores, without a coordinator.
 */
export function rendezvousScore(peerId: string, digest: string, index: number): bigint {
  return createHash('sha256').update(`${peerId}\n${digest}\n${index}`).digest().readBigUInt64BE(0)
}
