import type { PeerId } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import type { Logger } from '../log.js'
import type { SwarmNode } from './node.js'
import { PreheatRequest, PreheatResponse } from './pb/preheat.js'

export const PREHEAT_PROTOCOL = '/shoal/preheat/1.0.0'
const MAX_FRAME = 64 * 1024
const TIMEOUT_MS = 10_000

/** Starts a preheat in the background; throws to refuse it. */
export type PreheatHandler = (req: { ref: string; platform?: string; allPlatforms: boolean }, from: string) => void

/** Serves preheat requests from peers: accepted at once, done in the background. */
export async function handlePreheat(node: SwarmNode, handler: PreheatHandler, log: Logger): Promise<void> {
  await node.handle(
    PREHEAT_PROTOCOL,
    (stream, connection) => {
      const lp = lpStream(stream, { maxDataLength: MAX_FRAME })
      const signal = AbortSignal.timeout(TIMEOUT_MS)
      ;(async () => {
        const req = PreheatRequest.decode(await lp.read({ signal }))
        let response: PreheatResponse = { accepted: true, error: '' }
        try {
          const r: { ref: string; platform?: string; allPlatforms: boolean } = {
            ref: req.ref,
            allPlatforms: req.allPlatforms,
          }
          if (req.platform !== '') r.platform = req.platform
          handler(r, connection.remotePeer.toString())
        } catch (err) {
          response = { accepted: false, error: err instanceof Error ? err.message : String(err) }
        }
        await lp.write(PreheatResponse.encode(response), { signal })
        await stream.close({ signal })
      })().catch((err: unknown) => {
        log.debug({ err: String(err) }, 'preheat request failed')
        stream.abort(err instanceof Error ? err : new Error(String(err)))
      })
    },
    8,
  )
}

/** Asks one peer to preheat an image. */
export async function askPreheat(
  node: SwarmNode,
  peer: PeerId,
  req: { ref: string; platform?: string | undefined; allPlatforms?: boolean | undefined },
): Promise<PreheatResponse> {
  const signal = AbortSignal.timeout(TIMEOUT_MS)
  const stream = await node.dialProtocol(peer, PREHEAT_PROTOCOL, signal)
  const lp = lpStream(stream, { maxDataLength: MAX_FRAME })
  await lp.write(
    PreheatRequest.encode({ ref: req.ref, platform: req.platform ?? '', allPlatforms: req.allPlatforms === true }),
    { signal },
  )
  const res = PreheatResponse.decode(await lp.read({ signal }))
  await stream.close({ signal }).catch(() => {})
  return res
}
