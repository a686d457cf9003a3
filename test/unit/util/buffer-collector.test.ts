import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { BufferCollector, exposeGc, type GcFunction } from '../../../src/util/buffer-collector.js'

const MiB = 1024 * 1024

describe('BufferCollector', () => {
  test('collects once Buffers grew a step over their lowest, and not while they do not grow', () => {
    let bytes = 40 * MiB
    const calls: string[] = []
    const gc: GcFunction = (o) => {
      calls.push(o.type)
      bytes = 70 * MiB // still being swept
    }
    const c = new BufferCollector(gc, 16 * MiB, 1000, () => bytes)
    assert.equal(c.check(), false, 'the first reading is the floor')
    bytes = 50 * MiB
    assert.equal(c.check(), false, '10 MiB over the floor')
    bytes = 30 * MiB
    assert.equal(c.check(), false, 'a new low')
    bytes = 45 * MiB
    assert.equal(c.check(), false, '15 MiB over the new low')
    bytes = 46 * MiB
    assert.equal(c.check(), true, '16 MiB over it')
    assert.deepEqual(calls, ['minor'], 'a young-generation collection, not a full one')
    bytes = 35 * MiB // swept
    assert.equal(c.check(), false)
    for (let i = 0; i < 5; i++) assert.equal(c.check(), false, 'idle: nothing collected')
    bytes = 51 * MiB
    assert.equal(c.check(), true)
    assert.equal(c.runs, 2)
  })

  test('without a gc function it does nothing', () => {
    const c = new BufferCollector(undefined, MiB, 10, () => 1000 * MiB)
    assert.equal(c.available, false)
    c.start()
    assert.equal(c.check(), false)
    c.stop()
  })

  test("V8's own gc is had at run time, and frees dead Buffers' memory without a full collection", async () => {
    const gc = exposeGc()
    assert.ok(gc !== undefined, 'gc from a new context after --expose-gc')
    const { PerformanceObserver, constants } = await import('node:perf_hooks')
    const entries: { kind: number; at: number }[] = []
    const obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        entries.push({ kind: (e as unknown as { detail: { kind: number } }).detail.kind, at: e.startTime })
      }
    })
    obs.observe({ entryTypes: ['gc'] })
    const c = new BufferCollector(gc, 16 * MiB, 1000)
    c.check()
    const before = process.memoryUsage().arrayBuffers
    let sum = 0
    for (let i = 0; i < 512; i++) {
      const b = Buffer.allocUnsafeSlow(64 * 1024)
      b[0] = i & 255
      sum += b[0]
    }
    assert.ok(process.memoryUsage().arrayBuffers - before >= 16 * MiB, '32 MiB of dead Buffers not freed yet')
    const from = performance.now()
    assert.equal(c.check(), true)
    const to = performance.now()
    // The sweeper frees their memory on its own thread, soon after the collection.
    let after = process.memoryUsage().arrayBuffers
    for (let i = 0; i < 100 && after - before >= 8 * MiB; i++) {
      await new Promise((r) => setTimeout(r, 20))
      after = process.memoryUsage().arrayBuffers
    }
    await new Promise((r) => setTimeout(r, 20))
    obs.disconnect()
    assert.ok(after - before < 8 * MiB, `freed: ${(after - before) / MiB} MiB left of 32 (checksum ${sum})`)
    // Only the collection the check started (V8 may run its own at any time before or after).
    const ours = entries.filter((e) => e.at >= from && e.at <= to).map((e) => e.kind)
    assert.deepEqual(ours, [constants.NODE_PERFORMANCE_GC_MINOR], 'one young-generation collection, no full one')
  })
})
