/**
 * The lab network: a "switch" namespace holding a bridge, and one namespace per host (the origin
 * and N nodes), each joined to the bridge by a veth pair created inside the switch namespace (so
 * nothing ever appears in the host's own namespace). Addresses come from a private /24 that
 * exists only inside these namespaces; there is no default route anywhere, so no packet can leave.
 *
 * Shaping: tc HTB on both ends of every host's veth — the host's eth0 egress (its upload) and the
 * switch port's egress towards the host (its download) — at the host's link rate, like a
 * full-duplex NIC of that speed.
 */
import { run } from './proc.js'

export const SUBNET_PREFIX = '10.87.0'
export const SWITCH_ADDR = `${SUBNET_PREFIX}.1`
export const ORIGIN_ADDR = `${SUBNET_PREFIX}.2`
/** Node k (1-based) is 10.87.0.(10+k). */
export const nodeAddr = (k: number): string => `${SUBNET_PREFIX}.${10 + k}`
export const MAX_NODES = 40

export interface Host {
  /** 'origin' or 'n1' … */
  name: string
  ns: string
  addr: string
  /** The switch port (veth end in the switch namespace) facing this host. */
  port: string
  mbit: number
}

export interface Topology {
  id: string
  switchNs: string
  origin: Host
  nodes: Host[]
}

/**
 * The queue under each host's rate limit. `bfifo`: a FIFO of 50 ms of the link's rate (256 KiB at
 * least, four GSO super-packets), about what a NIC or switch port holds. `pfifo`: HTB's own default,
 * a FIFO of the device's txqueuelen (1000) counted in packets — on veth GSO super-packets of up to
 * 64 KiB, so up to ~64 MB, tens of seconds on a 20 Mbit/s link: some TCP flows then hear nothing
 * for half a minute (bufferbloat), a lab artefact the lab's first passes ran with. (fq_codel, a
 * Linux host's default, is not built into this machine's kernel.)
 */
export type LeafQdisc = 'bfifo' | 'pfifo'

/** Bytes of the bounded FIFO under a link of `mbit`. */
function bfifoBytes(mbit: number): number {
  return Math.max(256 * 1024, Math.round(((mbit * 1e6) / 8) * 0.05))
}

/** HTB with burst/cburst 256k: veth passes GSO super-packets, a small burst under-delivers. */
async function shape(ns: string, dev: string, mbit: number, leaf: LeafQdisc): Promise<void> {
  await run('tc', ['-n', ns, 'qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'htb', 'default', '10'])
  const rate = `${mbit}mbit`
  await run('tc', [
    '-n',
    ns,
    'class',
    'add',
    'dev',
    dev,
    'parent',
    '1:',
    'classid',
    '1:10',
    'htb',
    'rate',
    rate,
    'ceil',
    rate,
    'burst',
    '256k',
    'cburst',
    '256k',
  ])
  if (leaf === 'bfifo') {
    const limit = String(bfifoBytes(mbit))
    await run('tc', ['-n', ns, 'qdisc', 'add', 'dev', dev, 'parent', '1:10', 'handle', '10:', 'bfifo', 'limit', limit])
  }
}

/**
 * Builds the topology. Every namespace is pushed onto `created` before it is made, so the caller's
 * teardown removes whatever exists even when this fails half-way.
 */
export async function createTopology(opts: {
  id: string
  nodes: number
  originMbit: number
  nodeMbit: number
  qdisc: LeafQdisc
  created: string[]
}): Promise<Topology> {
  if (opts.nodes < 1 || opts.nodes > MAX_NODES) throw new Error(`nodes must be 1…${MAX_NODES}`)
  const switchNs = `${opts.id}-sw`
  const addNs = async (ns: string): Promise<void> => {
    opts.created.push(ns)
    await run('ip', ['netns', 'add', ns])
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  }
  await addNs(switchNs)
  await run('ip', ['-n', switchNs, 'link', 'add', 'br0', 'type', 'bridge'])
  await run('ip', ['-n', switchNs, 'link', 'set', 'br0', 'up'])
  await run('ip', ['-n', switchNs, 'addr', 'add', `${SWITCH_ADDR}/24`, 'dev', 'br0'])

  const addHost = async (name: string, addr: string, mbit: number): Promise<Host> => {
    const ns = `${opts.id}-${name}`
    const port = `p-${name}`
    await addNs(ns)
    await run('ip', ['-n', switchNs, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
    await run('ip', ['-n', switchNs, 'link', 'set', port, 'master', 'br0'])
    await run('ip', ['-n', switchNs, 'link', 'set', port, 'up'])
    await run('ip', ['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0'])
    await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up'])
    await shape(ns, 'eth0', mbit, opts.qdisc)
    await shape(switchNs, port, mbit, opts.qdisc)
    return { name, ns, addr, port, mbit }
  }
  const origin = await addHost('o', ORIGIN_ADDR, opts.originMbit)
  const nodes: Host[] = []
  for (let k = 1; k <= opts.nodes; k++) nodes.push(await addHost(`n${k}`, nodeAddr(k), opts.nodeMbit))
  // No default route was added anywhere: check it, the lab must never reach outside.
  for (const ns of [switchNs, origin.ns, ...nodes.map((n) => n.ns)]) {
    const routes = await run('ip', ['-n', ns, 'route', 'show', 'default'])
    if (routes.trim() !== '') throw new Error(`namespace ${ns} has a default route: ${routes.trim()}`)
  }
  return { id: opts.id, switchNs, origin, nodes }
}

/** Deletes the namespaces (hosts first, the switch last); never throws, returns what failed. */
export async function deleteNamespaces(names: string[]): Promise<string[]> {
  const failed: string[] = []
  for (const ns of [...names].reverse()) {
    try {
      await run('ip', ['netns', 'del', ns], 10_000)
    } catch (err) {
      if (!(await namespaceExists(ns))) continue
      failed.push(`${ns}: ${err instanceof Error ? err.message : String(err)}`)
    }
  }
  return failed
}

export async function listNamespaces(): Promise<string[]> {
  const out = await run('ip', ['netns', 'list'], 10_000)
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((x) => x !== '')
}

async function namespaceExists(ns: string): Promise<boolean> {
  return (await listNamespaces().catch((): string[] => [])).includes(ns)
}

/** tx/rx byte counters of an interface inside a namespace (`ip -s -j link`). */
export async function linkCounters(ns: string, dev: string): Promise<{ tx: number; rx: number }> {
  const out = await run('ip', ['-n', ns, '-s', '-j', 'link', 'show', 'dev', dev], 10_000)
  const parsed = JSON.parse(out) as { stats64?: { rx?: { bytes?: number }; tx?: { bytes?: number } } }[]
  const s = parsed[0]?.stats64
  if (s?.rx?.bytes === undefined || s.tx?.bytes === undefined) throw new Error(`no counters for ${ns}/${dev}`)
  return { tx: s.tx.bytes, rx: s.rx.bytes }
}

/**
 * Can this process make network namespaces? Tries to add and delete a throw-away one. Returns
 * undefined when it can, else the reason.
 */
export async function netnsPermitted(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `not Linux (${process.platform})`
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'not root (the lab needs root)'
  const probe = `shlab-probe-${process.pid}`
  try {
    await run('ip', ['netns', 'add', probe], 10_000)
  } catch (err) {
    return `ip netns add failed: ${err instanceof Error ? err.message : String(err)}`
  }
  try {
    await run('tc', ['-n', probe, 'qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'htb', 'default', '10'], 10_000)
  } catch (err) {
    await run('ip', ['netns', 'del', probe], 10_000).catch(() => {})
    return `tc htb not available: ${err instanceof Error ? err.message : String(err)}`
  }
  try {
    await run('ip', ['netns', 'del', probe], 10_000)
  } catch (err) {
    return `ip netns del failed: ${err instanceof Error ? err.message : String(err)}`
  }
  return undefined
}

/** Packets a link queue sent and dropped (GSO super-packets on veth): drops are a full queue. */
export interface QueueCounts {
  sent: number
  dropped: number
}

/** What the leaf queue under `dev`'s rate (in `ns`) sent and dropped so far. */
export async function queueCounts(ns: string, dev: string): Promise<QueueCounts> {
  const out = await run('tc', ['-n', ns, '-s', '-j', 'qdisc', 'show', 'dev', dev])
  let sent = 0
  let dropped = 0
  for (const q of JSON.parse(out) as { kind?: string; drops?: number; packets?: number }[]) {
    // HTB's root counts its leaf's packets again.
    if (q.kind === 'htb') continue
    sent += q.packets ?? 0
    dropped += q.drops ?? 0
  }
  return { sent, dropped }
}
