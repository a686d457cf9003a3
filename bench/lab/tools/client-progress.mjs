/**
 * How soon the clients had their bytes, from lab result files (the twenty-seventh pass of
 * docs/BENCHMARKS.md): for each label (a group of result files, e.g. one engine) and each case
 * (scenario and system), the median over every node's pull of the time from its start until its
 * client had received 25, 50, 75 and 100 % of the image (`progress` in the result JSON: the
 * client's bytes, sampled every 250 ms).
 *
 *   node bench/lab/tools/client-progress.mjs base=/tmp/ab/base-1/lab-latest.json \
 *     base=/tmp/ab/base-2/lab-latest.json new=/tmp/ab/new-1/lab-latest.json new=/tmp/ab/new-2/lab-latest.json
 *
 * Each argument is LABEL=FILE (or a bare FILE: its own label); several files may share a label.
 */
import { readFileSync } from 'node:fs'

const args = process.argv.slice(2)
if (args.length === 0 || args.includes('-h') || args.includes('--help')) {
  console.error('usage: node client-progress.mjs [LABEL=]lab-result.json ...')
  process.exit(2)
}
const MARKS = [0.25, 0.5, 0.75, 1]
/** label → case → mark → seconds from each node's start */
const groups = new Map()
for (const arg of args) {
  const eq = arg.indexOf('=')
  const [label, file] = eq > 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, arg]
  const result = JSON.parse(readFileSync(file, 'utf8'))
  for (const run of result.runs ?? []) {
    const key = `${run.scenario} ${run.system} N=${run.nodes} ${Math.round(run.imageBytes / 1048576)} MiB`
    if (!groups.has(label)) groups.set(label, new Map())
    const cases = groups.get(label)
    if (!cases.has(key))
      cases.set(
        key,
        MARKS.map(() => []),
      )
    const marks = cases.get(key)
    for (const n of run.nodeResults ?? []) {
      if (n.role !== 'pull' || n.ok !== true) continue
      MARKS.forEach((m, i) => {
        const at = m === 1 ? n.durationMs : (n.progress ?? []).find((p) => p[1] >= m)?.[0] - n.startMs
        if (Number.isFinite(at)) marks[i].push(at / 1000)
      })
    }
  }
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0
    ? Number.NaN
    : s.length % 2 === 1
      ? s[(s.length - 1) / 2]
      : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
console.log('label  case  pulls  | median s from each start to the client holding 25 % / 50 % / 75 % / 100 %')
for (const [label, cases] of groups) {
  for (const [key, marks] of cases) {
    console.log(`${label}  ${key}  ${marks[3].length}  | ${marks.map((xs) => median(xs).toFixed(1)).join(' / ')}`)
  }
}
