/**
 * A lab probe: records each origin request of a daemon's transfers (blob, first and last piece,
 * start and end, epoch ms) and writes them to $SHOAL_PROBE_DIR/origin-<pid>.json when the daemon
 * exits. Load it into every daemon of a lab, after `npm run build`:
 *
 *   SHOAL_PROBE_DIR=/tmp/probe SHOAL_LAB_NODE_ARGS="--import $PWD/bench/lab/probes/origin-trace.mjs" \
 *     npm run lab -- --scenario P1 --runs 1 --baselines none
 */
import { mkdirSync, writeFileSync } from 'node:fs'

const { Transfer } = await import(new URL('../../../dist/src/transfer/transfer.js', import.meta.url).href)
const dir = process.env.SHOAL_PROBE_DIR ?? '/tmp/shoal-probe'
const runs = []
const originRun = Transfer.prototype.originRun
Transfer.prototype.originRun = function (first, last) {
  const rec = { blob: this.digest.hex.slice(0, 12), first, last, start: Date.now() }
  runs.push(rec)
  return originRun.call(this, first, last).finally(() => {
    rec.end = Date.now()
  })
}
const dump = () => {
  try {
    mkdirSync(dir, { recursive: true })
    writeFileSync(`${dir}/origin-${process.pid}.json`, JSON.stringify(runs))
  } catch {
    // a probe never fails the daemon
  }
}
process.on('exit', dump)
