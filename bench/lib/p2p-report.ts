/** The p2p phase's part of the printed report: one table per Node binary, then notes. */
import { MIB } from './client.js'
import { median } from './phases.js'
import { layout } from './table.js'
import type { P2pPull, P2pResult, P2pVariant } from './types.js'

const GIB = 1024 * MIB

type Cell = number | undefined

function fmt(x: Cell, digits: number): string {
  return x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(digits)
}

function ratio(a: Cell, b: Cell): Cell {
  return a === undefined || b === undefined || b === 0 ? undefined : a / b
}

/** Median over the runs of `f` (runs where it is undefined are left out). */
function med(pulls: P2pPull[], f: (p: P2pPull) => number | undefined): Cell {
  return median(pulls.map(f).filter((x): x is number => x !== undefined && Number.isFinite(x)))
}

function perGiB(cpu: number | undefined, bytes: number): number | undefined {
  return cpu === undefined ? undefined : cpu / (bytes / GIB)
}

function cores(cpu: number | undefined, ms: number): number | undefined {
  return cpu === undefined ? undefined : cpu / (ms / 1000)
}

function variantTable(r: P2pResult, v: P2pVariant): string[] {
  const n = Math.max(v.p2p.length, v.http.length)
  const size = r.blobBytes
  const title = `4 peer to peer ${size / MIB} MiB, A → B, ${v.node}${n > 0 ? `, median of ${n}` : ''}`
  if (v.error !== undefined && v.p2p.length === 0 && v.http.length === 0) {
    return [
      title,
      '-'.repeat(title.length),
      `  FAILED (${v.nodeBin}): ${v.error.split('\n').slice(0, 6).join('\n    ')}`,
    ]
  }
  const rows: string[][] = [[title, 'p2p A→B', 'raw HTTP', 'p2p/http']]
  const row = (name: string, p: Cell, h: Cell, digits: number, withRatio = true): void => {
    rows.push([name, fmt(p, digits), fmt(h, digits), withRatio ? fmt(ratio(p, h), 2) : ''])
  }
  const P = v.p2p
  const H = v.http
  row(
    'MiB/s, end to end',
    med(P, (x) => x.mibPerSec),
    med(H, (x) => x.mibPerSec),
    0,
  )
  rows.push([
    '    each run, MiB/s',
    P.map((x) => x.mibPerSec.toFixed(0)).join(' ') || '-',
    H.map((x) => x.mibPerSec.toFixed(0)).join(' ') || '-',
    '',
  ])
  row(
    '    MiB/s after the first byte',
    med(P, (x) => x.bodyMiBps),
    med(H, (x) => x.bodyMiBps),
    0,
  )
  row(
    '    time to first byte, s',
    med(P, (x) => x.ttfbMs / 1000),
    med(H, (x) => x.ttfbMs / 1000),
    3,
    false,
  )
  row(
    'receiver CPU s per GiB (B | undici client)',
    med(P, (x) => perGiB(x.receiverCpuS, size)),
    med(H, (x) => perGiB(x.receiverCpuS, size)),
    2,
  )
  row(
    '    receiver cores busy (CPU s / wall s)',
    med(P, (x) => cores(x.receiverCpuS, x.ms)),
    med(H, (x) => cores(x.receiverCpuS, x.ms)),
    2,
    false,
  )
  row(
    'sender CPU s per GiB (A | node:http server)',
    med(P, (x) => perGiB(x.senderCpuS, size)),
    med(H, (x) => perGiB(x.senderCpuS, size)),
    2,
  )
  row(
    '    sender cores busy',
    med(P, (x) => cores(x.senderCpuS, x.ms)),
    med(H, (x) => cores(x.senderCpuS, x.ms)),
    2,
    false,
  )
  row(
    'HTTP client of B, CPU s per GiB',
    med(P, (x) => perGiB(x.clientCpuS, size)),
    undefined,
    2,
    false,
  )
  const C = v.cacheHit
  rows.push([
    `cache hit on B, MiB/s (B's CPU s/GiB)`,
    C.length === 0
      ? 'n/a'
      : `${fmt(
          med(C, (x) => x.mibPerSec),
          0,
        )} (${fmt(
          med(C, (x) => perGiB(x.receiverCpuS, size)),
          2,
        )})`,
    '',
    '',
  ])
  row('first pull on A (fill from the origin), MiB/s', v.fill?.mibPerSec, undefined, 0, false)
  row(
    'peak RSS (VmHWM), MiB: B (largest of the runs)',
    P.length === 0 ? undefined : Math.max(...P.map((x) => x.receiverHwmMiB ?? 0)),
    undefined,
    0,
    false,
  )
  row('    A (serving the runs)', v.senderHwmMiB, undefined, 0, false)
  const peerShare = med(P, (x) => (x.blobBytes === undefined ? undefined : x.blobBytes.peer / size))
  const originBytes = P.reduce((s, x) => s + (x.blobBytes?.origin ?? 0), 0)
  const ok = P.length > 0 && P.every((x) => x.blobBytes?.peer === size && x.blobBytes.origin === 0)
  rows.push([
    `B's bytes from peers / blob size (B's /metrics)`,
    `${fmt(peerShare, 2)}${ok ? ' ok' : ' MISSED'}`,
    '',
    '',
  ])
  rows.push([`    B's bytes from the origin, all runs`, String(originBytes), '', ''])
  const lines = layout(rows)
  const notes: string[] = []
  const mode = {
    down: "B's upstream: a dead port during the pull (a proxy to the origin, closed after one HEAD)",
    dead: "B's upstream: a dead port from the start",
    live: "B's upstream: the origin (through a counting proxy)",
  }[r.originMode]
  const link = P.map((x) => x.originLinkBytes).filter((x): x is number => x !== undefined)
  notes.push(`  ${mode}${link.length > 0 ? `; origin → B bytes during the pulls: ${link.join(' ')}` : ''}`)
  const sources = [...new Set(P.map((x) => x.source ?? '-'))].join(', ')
  const cacheSources = [...new Set(C.map((x) => x.source ?? '-'))].join(', ')
  notes.push(
    `  X-Shoal-Source: p2p pulls ${sources || '-'}; cache hits ${cacheSources || '-'}; ` +
      `B's copy ${v.verified === undefined ? 'not checked' : v.verified ? 'hashed and matches the digest' : 'DOES NOT MATCH the digest'}`,
  )
  if (v.error !== undefined) notes.push(`  ERROR ${v.error}`)
  for (const p of v.problems) notes.push(`  problem: ${p}`)
  // All profiles are in the JSON; printed: A serving, and B's first run.
  for (const prof of v.profiles.filter((x) => /-A$|-B-run1$/.test(x.name))) {
    notes.push(`  CPU profile ${prof.name}: ${prof.busyS.toFixed(1)} s busy on the main thread (${prof.file})`)
    notes.push('    self time by area:')
    for (const a of prof.areas.slice(0, 8)) notes.push(`      ${a}`)
    notes.push('    time with the area on the stack (callers included):')
    for (const a of prof.inclusiveAreas.slice(0, 10)) notes.push(`      ${a}`)
    notes.push('    by function (self time):')
    for (const f of prof.top.slice(0, 10)) notes.push(`      ${f}`)
  }
  return [...lines, ...notes]
}

export function renderP2p(r: P2pResult): string[] {
  const out: string[] = []
  for (const v of r.variants) {
    if (out.length > 0) out.push('')
    out.push(...variantTable(r, v))
  }
  return out
}

/**
 * For the exit code: the bench's own Node variant failed, lost a p2p or HTTP run, got bytes from
 * elsewhere than the peer, or B's copy did not match. Another --node-bin failing is only reported
 * (Node 20 cannot run the daemon at all).
 */
export function p2pFailed(r: P2pResult | undefined): boolean {
  const v = r?.variants[0]
  if (r === undefined || v === undefined) return false
  const lost = v.p2p.length === 0 || v.http.length === 0 || v.problems.some((p) => /^run \d+ (p2p|raw HTTP):/.test(p))
  const wrong = v.verified === false || v.p2p.some((x) => x.blobBytes?.peer !== r.blobBytes || x.blobBytes.origin !== 0)
  return v.error !== undefined || lost || wrong
}
