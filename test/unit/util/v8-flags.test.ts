/**
 * The daemon's V8 settings (src/cli/v8-flags.ts) load without an unknown flag, and Buffers
 * allocated and dropped no longer force a full collection per 64 MB. (The fixed heap growing
 * factor's effect shows only under a busy node's timings — the lab counts full collections with
 * --trace-gc — not in a test process that has a core to itself.) Two child processes allocate the same 1 GiB in 64 KiB Buffers (as
 * socket reads and the cipher do) and count their full collections; one loads the module first.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const FLAGS_MODULE = fileURLToPath(new URL('../../../src/cli/v8-flags.js', import.meta.url))

const CHURN = `
import { PerformanceObserver, constants } from 'node:perf_hooks'
let major = 0
const obs = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (e.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) major++
})
obs.observe({ entryTypes: ['gc'] })
let keep = 0
for (let i = 0; i < 16384; i++) {
  const b = Buffer.allocUnsafeSlow(64 * 1024)
  b[i % b.length] = i & 255
  keep += b[0]
  if (i % 256 === 0) await new Promise((r) => setImmediate(r))
}
await new Promise((r) => setTimeout(r, 100))
obs.disconnect()
process.stdout.write(JSON.stringify({ major, keep }))
`

async function fullCollections(preload: string[]): Promise<number> {
  const args = [...preload.flatMap((m) => ['--import', m]), '--input-type=module', '-e', CHURN]
  const { stdout } = await promisify(execFile)(process.execPath, args, { timeout: 60_000 })
  return (JSON.parse(stdout) as { major: number }).major
}

describe('V8 flags of the daemon', () => {
  it('every flag it sets exists in this V8 (an unknown one is only reported on stderr)', async () => {
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      ['--import', FLAGS_MODULE, '-e', 'process.stdout.write("loaded")'],
      { timeout: 30_000 },
    )
    assert.equal(stdout, 'loaded')
    assert.equal(stderr, '')
  })

  it('Buffers dropped by the hundred MB do not each force a full collection', async (t) => {
    const plain = await fullCollections([])
    const flagged = await fullCollections([FLAGS_MODULE])
    t.diagnostic(`full collections for 1 GiB of 64 KiB Buffers: ${plain} without, ${flagged} with`)
    assert.ok(plain >= 8, `without the flag V8 collects per 64 MB (${plain})`)
    assert.ok(flagged * 3 <= plain, `with it far fewer (${flagged} vs ${plain})`)
  })
})
