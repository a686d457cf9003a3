/**
 * Where a process spent its CPU, from a V8 .cpuprofile (`node --cpu-prof`): self time per
 * function and per area (an npm package, node's internals, Shoal's own code, GC). Hints only:
 * sampled every ~1 ms on the main thread (libuv's threadpool, e.g. fs reads and hashing done
 * there, is not in it).
 */
import { readFile } from 'node:fs/promises'
import { basename } from 'node:path'
import type { CpuProfileSummary } from './types.js'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}

interface Profile {
  nodes: ProfileNode[]
  samples?: number[]
  timeDeltas?: number[]
  startTime: number
  endTime: number
}

const META = new Set(['(idle)', '(program)', '(garbage collector)', '(root)'])

function area(node: ProfileNode): string {
  const { functionName, url } = node.callFrame
  if (META.has(functionName)) return functionName
  if (url === '') return '(native / builtin)'
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)
  if (pkg?.[1] !== undefined) return pkg[1]
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0] ?? ''}`
  const own = /\/dist\/src\/([^/]+?)(?:\.js)?(?:\/|$)/.exec(url)
  if (own?.[1] !== undefined) return `shoal src/${own[1]}`
  return basename(url)
}

function where(node: ProfileNode): string {
  const { url, lineNumber } = node.callFrame
  if (url === '') return ''
  const short = url
    .replace(/^file:\/\//, '')
    .replace(/^.*node_modules\//, '')
    .replace(/^.*\/dist\//, '')
  return ` (${short}:${lineNumber + 1})`
}

function pct(x: number, total: number): string {
  return `${((100 * x) / total).toFixed(1).padStart(5)}%`
}

export async function summariseCpuProfile(name: string, file: string, topN = 12): Promise<CpuProfileSummary> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as Profile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const self = new Map<number, number>()
  const samples = profile.samples ?? []
  const deltas = profile.timeDeltas ?? []
  // timeDeltas[i] is the time before sample i; attribute it to the sample that follows it.
  for (let i = 0; i < samples.length; i++) {
    const id = samples[i]
    if (id === undefined) continue
    self.set(id, (self.get(id) ?? 0) + Math.max(0, deltas[i + 1] ?? 0))
  }
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const fns = new Map<string, number>()
  const areas = new Map<string, number>()
  const inclusive = new Map<string, number>()
  let busy = 0
  for (const [id, us] of self) {
    const node = byId.get(id)
    if (node === undefined) continue
    if (node.callFrame.functionName === '(idle)') continue
    busy += us
    const fn = `${node.callFrame.functionName || '(anonymous)'}${where(node)}`
    fns.set(fn, (fns.get(fn) ?? 0) + us)
    const a = area(node)
    areas.set(a, (areas.get(a) ?? 0) + us)
    // Every package / Shoal area on the stack, once: where the work was asked for.
    const seen = new Set<string>()
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur)
      if (n === undefined) break
      const x = area(n)
      if (x.startsWith('(') || x.startsWith('node:') || seen.has(x)) continue
      seen.add(x)
      inclusive.set(x, (inclusive.get(x) ?? 0) + us)
    }
  }
  const total = Math.max(1, busy)
  const sorted = (m: Map<string, number>): [string, number][] => [...m.entries()].sort((x, y) => y[1] - x[1])
  return {
    name,
    file,
    busyS: busy / 1e6,
    top: sorted(fns)
      .slice(0, topN)
      .map(([k, v]) => `${pct(v, total)} ${k}`),
    areas: sorted(areas)
      .slice(0, topN)
      .map(([k, v]) => `${pct(v, total)} ${k}`),
    inclusiveAreas: sorted(inclusive)
      .slice(0, topN)
      .map(([k, v]) => `${pct(v, total)} ${k}`),
  }
}
