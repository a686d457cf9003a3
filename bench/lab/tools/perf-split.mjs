/**
 * Where a whole machine's busy time went, from a system-wide profile with call chains: each
 * sample that is not idle is put in one bucket by who ran (the daemons, skopeo, the registry,
 * kernel threads) and what the call chain shows (own code, new page-cache pages on file writes,
 * page faults, sockets, …). Used for the tenth pass of docs/BENCHMARKS.md:
 *
 *   perf record -a -g -F 200 -o perf.data &      # then run the lab, then stop perf
 *   perf script -i perf.data -F comm,tid,time,ip,sym > perf.txt
 *   node bench/lab/tools/perf-split.mjs perf.txt [FROM TO]   # FROM/TO: perf's clock, seconds
 *
 * perf's clock is seconds since boot (as in /proc/uptime): the lab's JSON gives each run's start
 * as a date, so FROM is the uptime at that date.
 */
import { readFileSync } from 'node:fs'

const [file, fromArg, toArg] = process.argv.slice(2)
if (file === undefined) {
  console.error('usage: node perf-split.mjs PERF_SCRIPT_OUTPUT [FROM TO]')
  process.exit(2)
}
const from = Number(fromArg ?? 0)
const to = Number(toArg ?? Number.POSITIVE_INFINITY)

function who(comm) {
  if (/skopeo/.test(comm)) return 'skopeo'
  if (/docker-registry/.test(comm)) return 'registry'
  if (/MainThread|V8Worker|libuv-worker|^node$/.test(comm)) return 'node'
  if (/kworker|ksoftirq|kdamond|kswapd/.test(comm)) return 'kernel thread'
  return 'other'
}

function what(frames) {
  const has = (s) => frames.some((f) => f.includes(s))
  const inKernel =
    (has('entry_SYSCALL') || has('asm_exc_page_fault') || has('asm_') || has('ret_from_fork') || has('irq')) &&
    !/^(Builtins|v8::|node::)/.test(frames[0] ?? '')
  if (!inKernel) return 'own code'
  if (has('asm_exc_page_fault')) {
    if (has('generic_perform_write')) return 'kernel: page-cache write (fault)'
    if (has('tcp_recvmsg')) return 'kernel: page fault in a socket read'
    if (has('filemap_read')) return 'kernel: page fault in a file read'
    return 'kernel: page fault'
  }
  if (has('generic_perform_write')) return 'kernel: file write into new page-cache pages'
  if (has('filemap_read')) return 'kernel: page-cache read'
  if (has('tcp_sendmsg') || has('sock_sendmsg') || has('sock_write_iter'))
    return 'kernel: socket send (veth, bridge, HTB)'
  if (has('tcp_recvmsg')) return 'kernel: socket receive'
  if (has('net_rx_action') || has('do_softirq') || has('handle_softirqs')) return 'kernel: softirq'
  if (has('munmap') || has('madvise') || has('unmap_page_range')) return 'kernel: munmap, madvise'
  if (has('epoll') || has('futex') || has('schedule')) return 'kernel: epoll, futex, scheduler'
  return 'kernel: other'
}

const buckets = new Map()
let total = 0
for (const block of readFileSync(file, 'utf8').split('\n\n')) {
  const lines = block.trim().split('\n')
  const head = /^(.+?)\s+(\d+)\s+([\d.]+):/.exec(lines[0] ?? '')
  if (head === null) continue
  const t = Number(head[3])
  const comm = (head[1] ?? '').trim()
  if (t < from || t > to || comm === 'swapper') continue
  const frames = lines.slice(1).map((l) => l.trim().split(' ').slice(1).join(' '))
  const key = `${who(comm)} | ${what(frames)}`
  buckets.set(key, (buckets.get(key) ?? 0) + 1)
  total++
}
console.log(`${total} busy samples`)
for (const [k, n] of [...buckets].sort((a, b) => b[1] - a[1])) {
  if (n / total < 0.001) break
  console.log(`${((100 * n) / total).toFixed(1).padStart(6)} %  ${k}`)
}
