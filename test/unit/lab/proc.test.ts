import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { machineShares, machineTimes, procTimes, writeCost } from '../../../bench/lab/proc.js'

describe('lab: CPU and page-fault readings', () => {
  it('reads a live process: system time within its CPU time, faults counted', () => {
    const before = procTimes(process.pid)
    assert.ok(before !== undefined)
    // Touch 32 MiB of new memory: the faults must grow by about that much.
    const buf = Buffer.alloc(32 * 1024 * 1024, 1)
    const after = procTimes(process.pid)
    assert.ok(after !== undefined)
    assert.ok(buf[buf.length - 1] === 1)
    assert.ok(after.sysSeconds <= after.cpuSeconds)
    assert.ok(after.cpuSeconds >= before.cpuSeconds)
    assert.ok((after.minorFaults - before.minorFaults) * 4096 >= 16 * 1024 * 1024, 'faults for new pages')
  })

  it('a process that is gone reads as undefined', () => {
    assert.equal(procTimes(2 ** 22 + 12345), undefined)
  })

  it("the machine's shares between two readings add up to 100 %", async () => {
    const a = machineTimes()
    const end = Date.now() + 200
    while (Date.now() < end) Math.sqrt(Math.random())
    const s = machineShares(a, machineTimes())
    assert.ok(s !== undefined)
    const idle = 100 - s.busyPct
    const sum = s.userPct + s.systemPct + s.softirqPct + s.stealPct + idle
    assert.ok(Math.abs(sum - 100) < 1.5, `shares sum to ${sum}`)
    assert.ok(s.busyPct > 0)
    assert.equal(machineShares(a, a), undefined)
  })
})

describe('lab: what writing a new file costs', () => {
  it('measures both writes and leaves no file behind', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-write-cost-'))
    try {
      const c = writeCost(dir, 8)
      assert.ok(c.firstMsPerMiB > 0 && Number.isFinite(c.firstMsPerMiB))
      assert.ok(c.againMsPerMiB > 0 && Number.isFinite(c.againMsPerMiB))
      assert.deepEqual(await readdir(dir), [])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
