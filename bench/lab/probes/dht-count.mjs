/**
 * A lab probe: counts a daemon's DHT operations (Shoal's provides and provider searches; the DHT
 * service's closest-peer queries, peer lookups, provides and searches; libp2p's peer-routing
 * lookups) with when each happened, and writes them to $SHOAL_PROBE_DIR/dht-<pid>.json when the
 * daemon exits. Load it into every daemon of a lab, after `npm run build`:
 *
 *   SHOAL_PROBE_DIR=/tmp/probe SHOAL_LAB_NODE_ARGS="--import $PWD/bench/lab/probes/dht-count.mjs" \
 *     npm run lab -- --scenario P1 --runs 1 --baselines none
 */
import { mkdirSync, writeFileSync } from 'node:fs'

const { SwarmNode } = await import(new URL('../../../dist/src/swarm/node.js', import.meta.url).href)
const dir = process.env.SHOAL_PROBE_DIR ?? '/tmp/shoal-probe'
const t0 = Date.now()
const counts = {}
const events = []
const bump = (k) => {
  counts[k] = (counts[k] ?? 0) + 1
  events.push([Date.now() - t0, k])
}
for (const m of ['provide', 'findProviders']) {
  const orig = SwarmNode.prototype[m]
  SwarmNode.prototype[m] = function (...a) {
    bump(`shoal.${m}`)
    return orig.apply(this, a)
  }
}
const start = SwarmNode.prototype.start
SwarmNode.prototype.start = async function (...a) {
  await start.apply(this, a)
  const dht = this.libp2p.services.dht
  for (const m of ['getClosestPeers', 'findPeer', 'provide', 'findProviders']) {
    const orig = dht[m].bind(dht)
    dht[m] = (...x) => {
      bump(`dht.${m}`)
      return orig(...x)
    }
  }
  const routing = this.libp2p.peerRouting
  const findPeer = routing.findPeer.bind(routing)
  routing.findPeer = (...x) => {
    bump('peerRouting.findPeer')
    return findPeer(...x)
  }
}
const dump = () => {
  try {
    mkdirSync(dir, { recursive: true })
    writeFileSync(`${dir}/dht-${process.pid}.json`, JSON.stringify({ counts, events }))
  } catch {
    // a probe never fails the daemon
  }
}
process.on('exit', dump)
