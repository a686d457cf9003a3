/**
 * What writing a new file costs by the size of each write: 4 MiB pieces in random order, four
 * writes in flight (as a daemon stores pieces), each piece written in one call or in 1 MiB or
 * 256 KiB calls. CPU ms per MiB per round, medians, and each size's ratio to one call per piece.
 * A pause before each file lets the memory freed by the last one go back to a VM's host, as it
 * does between lab runs. Writes only under the OS temp dir.
 *
 *     npm run bench:writes [-- --mib 256 --rounds 3 --pause-ms 3000]
 */
import { mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

const PIECE = 4 * 1024 * 1024
const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '256' },
    rounds: { type: 'string', default: '3' },
    'pause-ms': { type: 'string', default: '3000' },
  },
})
const mib = Math.max(4, Math.min(4096, Number(values.mib)))
const rounds = Math.max(1, Math.min(20, Number(values.rounds)))
const pauseMs = Math.max(0, Math.min(60_000, Number(values['pause-ms'])))
const sizes = [PIECE, 1024 * 1024, 256 * 1024]

const dir = await mkdtemp(join(tmpdir(), 'shoal-bench-writes-'))
const piece = Buffer.alloc(PIECE, 0xa5)
const pieces = Math.ceil(mib / 4)
const results = new Map<number, number[]>(sizes.map((s) => [s, []]))
try {
  for (let r = 0; r < rounds; r++) {
    for (const size of sizes) {
      await new Promise((resolve) => setTimeout(resolve, pauseMs))
      const order = [...Array(pieces).keys()].sort(() => Math.random() - 0.5)
      const file = join(dir, 'f')
      const before = process.cpuUsage()
      const fh = await open(file, 'w')
      await Promise.all(
        [0, 1, 2, 3].map(async (w) => {
          for (let k = w; k < order.length; k += 4) {
            const at = (order[k] ?? 0) * PIECE
            for (let off = 0; off < PIECE; off += size) await fh.write(piece, off, size, at + off)
          }
        }),
      )
      await fh.close()
      const used = process.cpuUsage(before)
      await rm(file)
      results.get(size)?.push((used.user + used.system) / 1000 / (pieces * 4))
    }
  }
} finally {
  await rm(dir, { recursive: true, force: true })
}
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] ?? Number.NaN
}
const base = median(results.get(PIECE) ?? [])
console.log(`new ${pieces * 4} MiB file, 4 MiB pieces in random order, 4 writes in flight, ${rounds} rounds`)
for (const [size, ms] of results) {
  const m = median(ms)
  console.log(
    `  writes of ${String(size / 1024).padStart(4)} KiB: ${m.toFixed(2)} ms CPU per MiB (rounds ${ms.map((x) => x.toFixed(2)).join(', ')}), ${(m / base).toFixed(2)} × one call per piece`,
  )
}
