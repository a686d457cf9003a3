import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import type { FileHandle } from 'node:fs/promises'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, test } from 'node:test'
import { setTimeout as sleep, setImmediate as yieldToLoop } from 'node:timers/promises'
import { PIECE_SIZE_MIN } from '../../../src/constants.js'
import { ShoalError } from '../../../src/errors.js'
import { silentLogger } from '../../../src/log.js'
import { type Digest, parseDigest } from '../../../src/oci/digest.js'
import { type BlobStore, createStore } from '../../../src/store/store.js'
import type { BlobSwarm, ClaimKind, SwarmPeer } from '../../../src/transfer/contracts.js'
import { OriginGate } from '../../../src/transfer/origin-gate.js'
import { rendezvousScore } from '../../../src/transfer/rendezvous.js'
import { type ByteOrigin, type OriginFetcher, Transfer, type TransferInit } from '../../../src/transfer/transfer.js'

const PIECE = PIECE_SIZE_MIN
const CHUNK = 256 * 1024
/** Every test's own deadline: a hang fails the test instead of the suite. */
const TEST_TIMEOUT = 10_000

function digestOf(bytes: Uint8Array): Digest {
  return parseDigest(`sha256:${createHash('sha256').update(bytes).digest('hex')}`)
}

interface Deferred<T> {
  promise: Promise<T>
  resolve: (v: T) => void
}

function deferred<T = void>(): Deferred<T> {
  let resolve!: (v: T) => void
  const promise = new Promise<T>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

/** Polls `check` until it holds; fails after `ms`. */
async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(5)
  }
}

/** Rejects after `ms` if `p` has not settled. */
function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) {
      reject(signal.reason)
      return
    }
    signal.addEventListener('abort', () => reject(signal.reason), { once: true })
  })
}

interface ServeOptions {
  /** Absolute offset at which the body breaks off. */
  cutAt?: number
  /** Breaking off by throwing (a reset connection) or by ending early (a clean but short body). */
  cut?: 'throw' | 'end'
  /** Absolute offset before which the body waits for `gate`. */
  pauseAt?: number
  gate?: Promise<void>
  /** Absolute offset at which the body waits until the transfer aborts it. */
  stallAt?: number
}

/** Bytes [from, to) of `data` in CHUNK pieces, yielding to the event loop between chunks. */
async function* serve(
  data: Buffer,
  from: number,
  to: number,
  signal: AbortSignal,
  opts: ServeOptions = {},
): AsyncGenerator<Uint8Array> {
  let pos = from
  while (pos < to) {
    let next = Math.min(to, pos + CHUNK)
    for (const stop of [opts.cutAt, opts.pauseAt, opts.stallAt]) {
      if (stop !== undefined && stop > pos && stop < next) next = stop
    }
    if (opts.cutAt !== undefined && pos >= opts.cutAt) {
      if (opts.cut === 'end') return
      throw new Error('connection reset by peer')
    }
    if (opts.pauseAt !== undefined && pos >= opts.pauseAt && opts.gate !== undefined) {
      await opts.gate
      opts.gate = undefined
    }
    if (opts.stallAt !== undefined && pos >= opts.stallAt) await untilAborted(signal)
    await yieldToLoop()
    if (signal.aborted) throw signal.reason
    yield data.subarray(pos, next)
    pos = next
  }
}

type Serve = (call: number, start: number, end: number, signal: AbortSignal) => AsyncIterable<Uint8Array>

/** An in-memory origin: records every request, answers with what the test's `serve` gives. */
class MemorySource implements OriginFetcher {
  readonly name = 'memory origin'
  readonly calls: { start: number; end: number; signal: AbortSignal }[] = []
  private readonly answer: Serve

  constructor(answer: Serve) {
    this.answer = answer
  }

  static of(data: Buffer, opts: (call: number) => ServeOptions = () => ({})): MemorySource {
    return new MemorySource((call, start, end, signal) => serve(data, start, end, signal, opts(call)))
  }

  async fetch(start: number, end: number, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const call = this.calls.length
    this.calls.push({ start, end, signal })
    return this.answer(call, start, end, signal)
  }
}

interface Reader {
  received: number
  chunks: Buffer[]
  /** Status of the transfer when the first chunk arrived. */
  firstChunkStatus: string | undefined
  result: Promise<Buffer>
  controller: AbortController
}

/** One client: acquire, read [start, end), release (with `graceMs`) when done or failed. */
function startReader(t: Transfer, start: number, end: number, graceMs = 0): Reader {
  const controller = new AbortController()
  const reader: Reader = {
    received: 0,
    chunks: [],
    firstChunkStatus: undefined,
    controller,
    result: Promise.resolve(Buffer.alloc(0)),
  }
  t.acquire()
  reader.result = (async () => {
    // As the proxy reads: into one buffer used again (so every chunk is copied out here).
    const r = t.reader(controller.signal)
    const buf = Buffer.alloc(256 * 1024)
    try {
      for (let pos = start; pos < end; ) {
        const n = await r.read(buf.subarray(0, Math.min(buf.length, end - pos)), pos)
        reader.firstChunkStatus ??= t.status
        reader.chunks.push(Buffer.from(buf.subarray(0, n)))
        reader.received += n
        pos += n
      }
      return Buffer.concat(reader.chunks)
    } finally {
      await r.close()
      t.release(graceMs)
    }
  })()
  reader.result.catch(() => {})
  return reader
}

function isCode(code: string): (err: unknown) => boolean {
  return (err: unknown) => err instanceof ShoalError && err.code === code
}

/** Aborts a transfer a test is done with, and waits for it to end. */
async function endTransfer(t: Transfer): Promise<void> {
  t.abort(new ShoalError('ABORTED', 'test over'))
  await assert.rejects(within(5000, t.done, 'done'), isCode('ABORTED'))
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

describe('Transfer', () => {
  let root: string
  let store: BlobStore
  /** Partial file handles the transfers opened, to know when a transfer has let go of its file. */
  let handles: { handle: FileHandle; closed: Promise<void> }[]

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'shoal-unit-transfer-'))
    store = createStore({ dataDir: join(root, 'data') })
    await store.open()
    handles = []
    const openPartial = store.openPartial.bind(store)
    store.openPartial = async (digest, size) => {
      const opened = await openPartial(digest, size)
      const closed = deferred()
      const close = opened.handle.close.bind(opened.handle)
      opened.handle.close = async () => {
        try {
          await close()
        } finally {
          closed.resolve()
        }
      }
      handles.push({ handle: opened.handle, closed: closed.promise })
      return opened
    }
  })

  afterEach(async () => {
    await within(5000, Promise.all(handles.map((h) => h.closed)), 'transfers to close their partial files')
    await store.close()
    await rm(root, { recursive: true, force: true })
  })

  function transfer(data: Buffer, origin: OriginFetcher, extra: Partial<TransferInit> = {}, digest?: Digest) {
    const counted: Record<ByteOrigin, number> = { origin: 0, peer: 0 }
    const t = new Transfer(
      { digest: digest ?? digestOf(data), size: data.length, ...extra },
      { store, logger: silentLogger(), origin, onBytes: (source, n) => (counted[source] += n) },
    )
    return { t, counted }
  }

  test('streams to several readers, in order, while downloading; then commits', { timeout: TEST_TIMEOUT }, async () => {
    const data = randomBytes(2 * PIECE + 12_345)
    const gate = deferred()
    const origin = MemorySource.of(data, () => ({ pauseAt: PIECE + CHUNK, gate: gate.promise }))
    const { t, counted } = transfer(data, origin, { mediaType: 'application/vnd.oci.image.layer.v1.tar' })
    await t.start()
    assert.equal(t.pieceCount, 3)
    assert.equal(t.pieceSize, PIECE)

    const readers = [
      startReader(t, 0, data.length),
      startReader(t, 0, data.length),
      startReader(t, 100, PIECE + 50),
      startReader(t, PIECE + 1, data.length - 1),
    ]
    // Piece 0 is stored while the origin holds back the rest: the readers get it now.
    await waitFor(
      'readers to receive piece 0',
      () => readers.slice(0, 2).every((r) => r.received === PIECE) && readers[2]?.received === PIECE - 100,
    )
    assert.equal(t.status, 'running')
    assert.equal(readers[3]?.received, 0)
    assert.equal(t.has(0), true)
    assert.equal(t.has(1), false)
    gate.resolve()

    const [a, b, c, d] = await within(5000, Promise.all(readers.map((r) => r.result)), 'readers')
    assert.ok(a?.equals(data), 'reader 1 got the blob, in order')
    assert.ok(b?.equals(data), 'reader 2 got the blob, in order')
    assert.ok(c?.equals(data.subarray(100, PIECE + 50)))
    assert.ok(d?.equals(data.subarray(PIECE + 1, data.length - 1)))
    for (const r of readers.slice(0, 3)) assert.equal(r.firstChunkStatus, 'running', 'streamed before the end')
    // Every byte is in the books once a client has the whole blob (a client that then reads the
    // metrics must find it there: the cold-herd test once did not).
    assert.equal(counted.origin, data.length, 'counted by the time the readers have it all')

    await within(5000, t.done, 'done')
    assert.equal(t.status, 'complete')
    assert.deepEqual(
      origin.calls.map((c) => [c.start, c.end]),
      [[0, data.length]],
      'one request for the blob',
    )
    assert.equal(counted.peer, 0)
    const info = await store.stat(t.digest)
    assert.equal(info?.size, data.length)
    assert.equal(info?.mediaType, 'application/vnd.oci.image.layer.v1.tar')
    assert.ok((await readFile(store.blobPath(t.digest))).equals(data))
    assert.equal(await exists(store.partialPath(t.digest)), false)
  })

  test('a reader that joins after the commit reads the stored blob', { timeout: TEST_TIMEOUT }, async () => {
    const data = randomBytes(PIECE + 10)
    const { t } = transfer(data, MemorySource.of(data))
    await t.start()
    await within(5000, t.done, 'done')
    const late = startReader(t, 3, data.length)
    assert.ok((await within(5000, late.result, 'late reader')).equals(data.subarray(3)))
  })

  test('holds back the last byte until the blob is verified', { timeout: TEST_TIMEOUT }, async () => {
    const good = randomBytes(1000)
    const wrong = Buffer.from(good)
    wrong[999] = (wrong[999] ?? 0) ^ 0xff
    // The origin serves bytes that differ from the digest in the last byte only.
    const gate = deferred()
    const discardPartial = store.discardPartial.bind(store)
    store.discardPartial = async (d) => {
      await gate.promise
      await discardPartial(d)
    }
    const { t } = transfer(wrong, MemorySource.of(wrong), {}, digestOf(good))
    await t.start()
    const reader = startReader(t, 0, 1000)
    await waitFor('the reader to get all but the last byte', () => reader.received === 999)
    await sleep(50)
    assert.equal(reader.received, 999, 'the last byte is not released before verification')
    assert.equal(t.status, 'running')
    assert.ok(Buffer.concat(reader.chunks).equals(good.subarray(0, 999)))
    gate.resolve()
    await assert.rejects(within(5000, reader.result, 'reader'), isCode('DIGEST_INVALID'))
    assert.equal(reader.received, 999)
  })

  test('digest mismatch: every reader errors, nothing is stored, the partial is discarded', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const data = randomBytes(PIECE + 777)
    const claimed = digestOf(Buffer.from('something else'))
    const { t } = transfer(data, MemorySource.of(data), {}, claimed)
    await t.start()
    const readers = [startReader(t, 0, data.length), startReader(t, 0, data.length), startReader(t, PIECE, data.length)]
    for (const r of readers) await assert.rejects(within(5000, r.result, 'reader'), isCode('DIGEST_INVALID'))
    await assert.rejects(within(5000, t.done, 'done'), (err: unknown) => {
      assert.ok(err instanceof ShoalError)
      assert.equal(err.code, 'DIGEST_INVALID')
      assert.equal(err.status, 502)
      return true
    })
    assert.equal(t.status, 'failed')
    for (const r of readers) assert.ok(r.received < data.length, 'no reader got the whole wrong blob')
    assert.equal(await store.stat(claimed), undefined)
    assert.equal(await exists(store.blobPath(claimed)), false)
    assert.equal(await exists(store.partialPath(claimed)), false)
  })

  test('bug: after a digest mismatch the final checkpoint records the discarded partial again', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    // repair() discards the partial (file and record); fail() then runs checkpoint(true), which
    // writes a record with every piece present for a file that no longer exists, so
    // partialBytes() (the quota's view) counts it until that digest is fetched again.
    const data = randomBytes(2000)
    const claimed = digestOf(Buffer.from('not these bytes'))
    const { t } = transfer(data, MemorySource.of(data), {}, claimed)
    await t.start()
    await assert.rejects(within(5000, t.done, 'done'), isCode('DIGEST_INVALID'))
    await within(5000, Promise.all(handles.map((h) => h.closed)), 'the partial file to be closed')
    assert.equal(await exists(store.partialPath(claimed)), false)
    assert.equal(await store.partialBytes(), 0, 'no partial record left for a discarded partial')
  })

  for (const cut of ['throw', 'end'] as const) {
    test(`a body that breaks off (${cut === 'throw' ? 'reset' : 'ends early'}) is resumed from the offset`, {
      timeout: TEST_TIMEOUT,
    }, async () => {
      const data = randomBytes(2 * PIECE + 4321)
      const cutAt = PIECE + PIECE / 2
      const origin = MemorySource.of(data, (call) => (call === 0 ? { cutAt, cut } : {}))
      const { t, counted } = transfer(data, origin)
      await t.start()
      const reader = startReader(t, 0, data.length)
      const got = await within(5000, reader.result, 'reader')
      assert.ok(got.equals(data))
      await within(5000, t.done, 'done')
      // Piece 0 was whole when the body broke: the retry starts at piece 1, not at 0.
      assert.deepEqual(
        origin.calls.map((c) => [c.start, c.end]),
        [
          [0, data.length],
          [PIECE, data.length],
        ],
      )
      // The half piece received before the break is not counted.
      await waitFor('every piece to be counted once', () => counted.origin === data.length)
      await sleep(20)
      assert.equal(counted.origin, data.length)
      assert.ok((await readFile(store.blobPath(t.digest))).equals(data))
    })
  }

  test('a source that ignores the range and restarts from byte 0 never yields a wrong blob', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    // OriginFetcher promises bytes [start, end); tolerance of an origin that answers 200 to a Range
    // lives in src/transfer/blobs.ts. If a fetcher breaks that promise on a resume, the transfer
    // sees more bytes than it asked for and fails: no client gets a complete wrong blob.
    const data = randomBytes(2 * PIECE + 5)
    const origin = new MemorySource((call, start, end, signal) =>
      call === 0 ? serve(data, start, end, signal, { cutAt: PIECE + PIECE / 2 }) : serve(data, 0, data.length, signal),
    )
    const { t } = transfer(data, origin)
    await t.start()
    const reader = startReader(t, 0, data.length)
    await assert.rejects(within(5000, reader.result, 'reader'), isCode('SIZE_INVALID'))
    await assert.rejects(within(5000, t.done, 'done'), isCode('SIZE_INVALID'))
    assert.ok(reader.received < data.length)
    assert.deepEqual(origin.calls[1] && [origin.calls[1].start, origin.calls[1].end], [PIECE, data.length])
    assert.equal(await store.stat(t.digest), undefined)
  })

  test('a source that ignores the range is fine when the whole blob was asked for', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const data = randomBytes(PIECE + 99)
    const origin = new MemorySource((_call, _start, _end, signal) => serve(data, 0, data.length, signal))
    const { t } = transfer(data, origin)
    await t.start()
    await within(5000, t.done, 'done')
    assert.ok((await readFile(store.blobPath(t.digest))).equals(data))
  })

  test('a new transfer resumes from the pieces an earlier one checkpointed', { timeout: TEST_TIMEOUT }, async () => {
    const data = randomBytes(2 * PIECE + 100)
    const first = MemorySource.of(data, () => ({ stallAt: PIECE + CHUNK }))
    const one = transfer(data, first).t
    await one.start()
    await waitFor('piece 0 to be stored', () => one.has(0))
    one.abort(new ShoalError('ABORTED', 'daemon stopping'))
    await assert.rejects(within(5000, one.done, 'first done'), isCode('ABORTED'))
    assert.equal(first.calls[0]?.signal.aborted, true, 'the origin request is cancelled')
    await within(5000, Promise.all(handles.map((h) => h.closed)), 'the first transfer to close its file')
    assert.equal(await store.partialBytes(), data.length, 'progress recorded on the way out')

    const second = MemorySource.of(data)
    const { t: two, counted } = transfer(data, second)
    await two.start()
    assert.equal(two.has(0), true, 'piece 0 comes from disk')
    await within(5000, two.done, 'second done')
    assert.deepEqual(
      second.calls.map((c) => [c.start, c.end]),
      [[PIECE, data.length]],
    )
    await waitFor('the fetched pieces to be counted', () => counted.origin === data.length - PIECE)
    assert.ok((await readFile(store.blobPath(two.digest))).equals(data))
    assert.equal(await store.partialBytes(), 0)
  })

  test('the last reader leaving cancels the transfer after the grace', { timeout: TEST_TIMEOUT }, async () => {
    const data = randomBytes(PIECE + 10)
    const origin = MemorySource.of(data, () => ({ stallAt: CHUNK }))
    const { t } = transfer(data, origin)
    await t.start()
    const graceMs = 150
    const a = startReader(t, 0, data.length, graceMs)
    const b = startReader(t, 0, data.length, graceMs)
    await waitFor('the origin request', () => origin.calls.length === 1)
    a.controller.abort(new Error('client went away'))
    await assert.rejects(within(5000, a.result, 'reader a'), /client went away/)
    await sleep(graceMs + 50)
    assert.equal(t.status, 'running', 'another reader is still there')

    const left = Date.now()
    b.controller.abort(new Error('client went away'))
    await assert.rejects(within(5000, b.result, 'reader b'), /client went away/)
    await sleep(graceMs / 3)
    assert.equal(t.status, 'running', 'still running within the grace')
    await assert.rejects(within(5000, t.done, 'done'), isCode('ABORTED'))
    assert.ok(Date.now() - left >= graceMs - 5, `cancelled after ${Date.now() - left} ms, grace ${graceMs} ms`)
    assert.equal(t.status, 'failed')
    assert.equal(origin.calls[0]?.signal.aborted, true, 'the origin request is cancelled')
  })

  test('a reader that comes back within the grace keeps the transfer', { timeout: TEST_TIMEOUT }, async () => {
    const data = randomBytes(PIECE + 10)
    const gate = deferred()
    const origin = MemorySource.of(data, () => ({ pauseAt: CHUNK, gate: gate.promise }))
    const { t } = transfer(data, origin)
    await t.start()
    const graceMs = 100
    const first = startReader(t, 0, data.length, graceMs)
    first.controller.abort(new Error('retrying'))
    await assert.rejects(within(5000, first.result, 'first reader'), /retrying/)
    await sleep(graceMs / 4)
    const again = startReader(t, 0, data.length, graceMs)
    await sleep(graceMs * 2)
    assert.equal(t.status, 'running')
    gate.resolve()
    assert.ok((await within(5000, again.result, 'second reader')).equals(data))
    await within(5000, t.done, 'done')
    assert.equal(origin.calls.length, 1)
  })

  test('a reader that aborts does not disturb the others', { timeout: TEST_TIMEOUT }, async () => {
    const data = randomBytes(PIECE + 10)
    const gate = deferred()
    const { t } = transfer(
      data,
      MemorySource.of(data, () => ({ pauseAt: CHUNK, gate: gate.promise })),
    )
    await t.start()
    const quitter = startReader(t, 0, data.length)
    const stayer = startReader(t, 0, data.length)
    quitter.controller.abort(new Error('bye'))
    await assert.rejects(within(5000, quitter.result, 'quitter'), /bye/)
    gate.resolve()
    assert.ok((await within(5000, stayer.result, 'stayer')).equals(data))
    await within(5000, t.done, 'done')
  })

  test('origin failures are retried up to originAttempts, then every reader errors', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const data = randomBytes(1000)
    const origin = new MemorySource(() => {
      throw new ShoalError('UPSTREAM_UNREACHABLE', 'connection refused')
    })
    const { t } = transfer(data, origin, { originAttempts: 3 })
    await t.start()
    const reader = startReader(t, 0, data.length)
    await assert.rejects(within(5000, t.done, 'done'), isCode('UPSTREAM_UNREACHABLE'))
    await assert.rejects(within(5000, reader.result, 'reader'), isCode('UPSTREAM_UNREACHABLE'))
    assert.equal(origin.calls.length, 3)
  })

  test('an origin answer a retry cannot change fails at once', { timeout: TEST_TIMEOUT }, async () => {
    const data = randomBytes(1000)
    const origin = new MemorySource(() => {
      throw new ShoalError('BLOB_UNKNOWN', 'blob unknown to registry')
    })
    const { t } = transfer(data, origin)
    await t.start()
    await assert.rejects(within(5000, t.done, 'done'), isCode('BLOB_UNKNOWN'))
    assert.equal(origin.calls.length, 1)
  })

  test('abort() fails the readers with the reason', { timeout: TEST_TIMEOUT }, async () => {
    const data = randomBytes(1000)
    const { t } = transfer(
      data,
      MemorySource.of(data, () => ({ stallAt: 0 })),
    )
    await t.start()
    const reader = startReader(t, 0, data.length)
    const reason = new ShoalError('ABORTED', 'shutting down')
    t.abort(reason)
    await assert.rejects(within(5000, reader.result, 'reader'), (err: unknown) => err === reason)
    await assert.rejects(within(5000, t.done, 'done'), (err: unknown) => err === reason)
  })

  test('an empty blob completes without asking the origin', { timeout: TEST_TIMEOUT }, async () => {
    const data = Buffer.alloc(0)
    const origin = MemorySource.of(data)
    const { t } = transfer(data, origin)
    await t.start()
    await within(5000, t.done, 'done')
    assert.equal(origin.calls.length, 0)
    assert.equal((await store.stat(t.digest))?.size, 0)
    const reader = startReader(t, 0, 0)
    assert.equal((await within(5000, reader.result, 'reader')).length, 0)
  })

  test('pieces it holds can be served to peers', { timeout: TEST_TIMEOUT }, async () => {
    const data = randomBytes(PIECE + 10)
    const gate = deferred()
    const { t } = transfer(
      data,
      MemorySource.of(data, () => ({ pauseAt: PIECE + 1, gate: gate.promise })),
    )
    await t.start()
    assert.equal(t.downloading, true)
    await waitFor('piece 0', () => t.has(0))
    assert.ok(Buffer.from(await t.readPiece(0)).equals(data.subarray(0, PIECE)))
    await assert.rejects(t.readPiece(1), isCode('BLOB_UNKNOWN'))
    assert.deepEqual([...t.bitfield()], [0b01])
    assert.equal(await t.pieceTable(), undefined)
    gate.resolve()
    await within(5000, t.done, 'done')
    assert.equal(t.downloading, false)
  })
})

/** A peer that holds every piece and answers a request when the test says so. */
class FakePeer implements SwarmPeer {
  readonly downloading = false
  inflight = 0
  throughput = 0
  busyUntil = 0
  lastDataAt = 0
  holds = true
  /** Pieces this peer said it is sending to another peer, until when. */
  readonly deferred = new Map<number, number>()
  readonly asked: { index: number; at: number; abortedAt?: number; answer: (d: Uint8Array) => void }[] = []

  constructor(
    readonly id: string,
    private readonly data: Buffer,
  ) {}

  has(): boolean {
    return this.holds
  }

  deferredUntil(index: number): number {
    return this.deferred.get(index) ?? 0
  }

  hashOf(index: number): Uint8Array {
    return createHash('sha256')
      .update(this.data.subarray(index * PIECE, (index + 1) * PIECE))
      .digest()
  }

  request(index: number, signal: AbortSignal): Promise<Uint8Array> {
    this.inflight++
    return new Promise<Uint8Array>((resolve, reject) => {
      const entry: FakePeer['asked'][number] = { index, at: Date.now(), answer: resolve }
      this.asked.push(entry)
      signal.addEventListener('abort', () => {
        entry.abortedAt = Date.now()
        reject(signal.reason)
      })
    }).finally(() => this.inflight--)
  }

  piece(index: number): Uint8Array {
    return this.data.subarray(index * PIECE, (index + 1) * PIECE)
  }
}

/** An origin that refuses every fetch with `message` and counts the attempts. */
function refusingOrigin(message: string): OriginFetcher & { asked: number } {
  const origin = {
    name: 'counted',
    asked: 0,
    fetch: () => {
      origin.asked++
      return Promise.reject(new Error(message))
    },
  }
  return origin
}

function fakeSwarm(peers: FakePeer[]): BlobSwarm & { changed(): void; rejoin: number; released: Uint8Array[] } {
  const listeners: (() => void)[] = []
  return {
    selfId: 'self',
    ready: Promise.resolve(),
    rejoin: 0,
    released: [],
    peers: () => peers.filter((p) => p.holds),
    pendingPeers: () => 0,
    rejoining() {
      return this.rejoin
    },
    request: (peer, index, signal) => (peer as FakePeer).request(index, signal),
    release(data) {
      this.released.push(data)
    },
    announceHave: () => {},
    announceClaim: () => {},
    claimOf: () => undefined,
    ban: (id, reason) => assert.fail(`${id} banned: ${reason}`),
    onChange: (l) => listeners.push(l),
    close: () => {},
    changed: () => {
      for (const l of listeners) l()
    },
  }
}

describe('Transfer: piece requests to peers', () => {
  let root: string
  let store: BlobStore
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'shoal-unit-stall-'))
    store = createStore({ dataDir: join(root, 'data') })
    await store.open()
  })
  afterEach(async () => {
    await store.close()
    await rm(root, { recursive: true, force: true })
  })

  const noOrigin: OriginFetcher = {
    name: 'no origin',
    fetch: () => Promise.reject(new Error('the origin must not be asked')),
  }

  test('a peer that sends nothing for peerStallMs loses the request; another peer serves it', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const data = randomBytes(PIECE)
    const silent = new FakePeer('silent', data)
    const other = new FakePeer('other', data)
    other.holds = false
    const swarm = fakeSwarm([silent, other])
    const t = new Transfer(
      { digest: digestOf(data), size: data.length, peerStallMs: 300, peerRequestsPerPeer: 1 },
      { store, logger: silentLogger(), origin: noOrigin, swarm },
    )
    await t.start()
    await waitFor('a request to the silent peer', () => silent.asked.length === 1)
    await waitFor('it to be given up', () => silent.asked[0]?.abortedAt !== undefined, 3000)
    const waited = (silent.asked[0]?.abortedAt ?? 0) - (silent.asked[0]?.at ?? 0)
    assert.ok(waited >= 300, `given up after ${waited} ms`)
    silent.holds = false
    other.holds = true
    swarm.changed()
    await waitFor('a request to the other peer', () => other.asked.length === 1)
    other.asked[0]?.answer(other.piece(0))
    await within(5000, t.done, 'done')
  })

  test("a piece's buffer is given back only after it is written and hashed (overwritten then, the blob is still right)", {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const data = randomBytes(3 * PIECE)
    const holder = new FakePeer('holder', data)
    const swarm = fakeSwarm([holder])
    const t = new Transfer(
      { digest: digestOf(data), size: data.length },
      { store, logger: silentLogger(), origin: noOrigin, swarm },
    )
    const storedAtRelease: boolean[] = []
    swarm.release = (d) => {
      const index = [0, 1, 2].find((i) => Buffer.from(d).equals(holder.piece(i)))
      storedAtRelease.push(index !== undefined && t.has(index))
      d.fill(0xaa) // as if the buffer were used for the next piece at once
    }
    await t.start()
    await waitFor('requests to the holder', () => holder.asked.length === 3)
    // Out of order: pieces 2 and 1 wait for 0, then the whole-blob hash reads them back.
    for (const i of [2, 1, 0]) {
      const a = holder.asked.find((x) => x.index === i)
      a?.answer(Uint8Array.from(holder.piece(i)))
      await sleep(50)
    }
    await within(5000, t.done, 'done')
    // The last piece's buffer is given back just after its write, which may be after the blob's
    // commit has resolved `done`.
    await waitFor('every buffer given back', () => storedAtRelease.length === 3)
    assert.deepEqual(storedAtRelease, [true, true, true], 'each piece was stored before its buffer was given back')
    const stored = await readFile(store.blobPath(digestOf(data)))
    assert.ok(stored.equals(data), 'the stored blob is the original')
  })

  test('the pieces from the first missing one on are asked first, in order, once two peers hold them', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const data = randomBytes(16 * PIECE)
    const a = new FakePeer('a', data)
    const b = new FakePeer('b', data)
    const t = new Transfer(
      { digest: digestOf(data), size: data.length, peerRequestsPerPeer: 4 },
      { store, logger: silentLogger(), origin: noOrigin, swarm: fakeSwarm([a, b]) },
    )
    await t.start()
    await waitFor('eight requests', () => a.asked.length + b.asked.length === 8)
    const asked = [...a.asked, ...b.asked].map((x) => x.index).sort((x, y) => x - y)
    assert.deepEqual(asked, [0, 1, 2, 3, 4, 5, 6, 7], 'the eight pieces the clients and the hash need next')
    for (let round = 0; round < 200 && t.downloading; round++) {
      for (const p of [a, b]) for (const x of p.asked.splice(0)) x.answer(p.piece(x.index))
      await sleep(10)
    }
    await within(5000, t.done, 'done')
  })

  test('a blob whose first piece comes last is hashed from the others read back, and stored right', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const N = 24
    const data = randomBytes(N * PIECE)
    const holder = new FakePeer('holder', data)
    const t = new Transfer(
      { digest: digestOf(data), size: data.length, peerRequestsPerPeer: 4 },
      { store, logger: silentLogger(), origin: noOrigin, swarm: fakeSwarm([holder]) },
    )
    await t.start()
    let first: FakePeer['asked'][number] | undefined
    const rest = Array.from({ length: N - 1 }, (_, i) => i + 1)
    for (let round = 0; round < 400 && !rest.every((i) => t.has(i)); round++) {
      for (const x of holder.asked.splice(0)) {
        if (x.index === 0) first = x
        else x.answer(Uint8Array.from(holder.piece(x.index)))
      }
      await sleep(5)
    }
    await waitFor('every piece but the first', () => rest.every((i) => t.has(i)) && first !== undefined)
    assert.equal(t.has(0), false)
    // The whole-blob hash now reads the other 23 back, a few at a time, in buffers used again.
    first?.answer(Uint8Array.from(holder.piece(0)))
    await within(5000, t.done, 'done')
    const stored = await readFile(store.blobPath(digestOf(data)))
    assert.ok(stored.equals(data), 'the stored blob is the original')
  })

  test('no origin fetch while a holder whose session was just lost is rejoining; its pieces come from it', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const data = randomBytes(2 * PIECE)
    const holder = new FakePeer('holder', data)
    holder.holds = false // its session is gone for the moment
    const swarm = fakeSwarm([holder])
    swarm.rejoin = 1
    const origin = refusingOrigin('the origin must not be asked while the holder rejoins')
    const t = new Transfer(
      { digest: digestOf(data), size: data.length, claimSettleMs: 0 },
      { store, logger: silentLogger(), origin, swarm },
    )
    await t.start()
    await sleep(800) // three scheduling ticks
    assert.equal(origin.asked, 0, 'the origin was asked while a peer was rejoining')
    holder.holds = true
    swarm.rejoin = 0
    swarm.changed()
    await waitFor('requests to the holder', () => holder.asked.length === 2)
    for (const a of holder.asked) a.answer(holder.piece(a.index))
    await within(5000, t.done, 'done')
    assert.equal(origin.asked, 0)
  })

  test('a holder is asked as soon as its Hello is in, before the discovery settles; the origin only after', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const data = randomBytes(3 * PIECE)
    const holder = new FakePeer('holder', data)
    holder.holds = false // its Hello has not come yet
    const swarm = fakeSwarm([holder])
    let settle!: () => void
    Object.assign(swarm, { ready: new Promise<void>((resolve) => (settle = resolve)) })
    const origin = refusingOrigin('the origin must not be asked before the discovery settles')
    const t = new Transfer(
      { digest: digestOf(data), size: data.length, claimSettleMs: 0 },
      { store, logger: silentLogger(), origin, swarm },
    )
    await t.start()
    await sleep(600) // two scheduling ticks: nobody holds anything yet, and no origin fetch
    assert.equal(origin.asked, 0, 'the origin was asked before the discovery settled')
    holder.holds = true
    swarm.changed()
    await waitFor('requests to the holder before the discovery settled', () => holder.asked.length === 3)
    for (const a of holder.asked) a.answer(holder.piece(a.index))
    await within(5000, t.done, 'done')
    assert.equal(origin.asked, 0)
    settle()
  })

  test('a busy peer that keeps sending piece bytes is waited for past peerStallMs', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const data = randomBytes(PIECE)
    const busy = new FakePeer('busy', data)
    const swarm = fakeSwarm([busy])
    const t = new Transfer(
      { digest: digestOf(data), size: data.length, peerStallMs: 300, peerRequestsPerPeer: 1 },
      { store, logger: silentLogger(), origin: noOrigin, swarm },
    )
    await t.start()
    await waitFor('a request', () => busy.asked.length === 1)
    // Other peers' pieces keep flowing from it for 4 stall periods, then ours comes.
    for (let i = 0; i < 12; i++) {
      busy.lastDataAt = Date.now()
      await sleep(100)
    }
    assert.equal(busy.asked[0]?.abortedAt, undefined, 'the request was given up while the peer was sending')
    busy.asked[0]?.answer(busy.piece(0))
    await within(5000, t.done, 'done')
    assert.equal(busy.asked.length, 1)
  })

  test('downloaders that share one holder ask it for different pieces (own random order among equally rare)', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const data = randomBytes(16 * PIECE)
    const firstAsked: number[][] = []
    for (let k = 0; k < 2; k++) {
      const seed = new FakePeer('seed', data)
      const t = new Transfer(
        { digest: digestOf(data), size: data.length, peerRequestsPerPeer: 4 },
        { store, logger: silentLogger(), origin: noOrigin, swarm: fakeSwarm([seed]) },
      )
      await t.start()
      await waitFor('four requests', () => seed.asked.length === 4)
      firstAsked.push(seed.asked.map((a) => a.index))
      for (const a of [...seed.asked]) a.answer(seed.piece(a.index))
      // The rest in any order, until done.
      for (let round = 0; round < 100 && t.downloading; round++) {
        for (const a of seed.asked.splice(0)) a.answer(seed.piece(a.index))
        await sleep(10)
      }
      await within(5000, t.done, 'done')
      await store.deleteBlob(digestOf(data)).catch(() => {})
    }
    assert.notDeepEqual(firstAsked[0], firstAsked[1], `both asked ${firstAsked[0]} first`)
    assert.notDeepEqual(firstAsked[0], [0, 1, 2, 3], 'not in index order')
  })

  test('a piece its holder is sending to another peer is asked of it only after the deferral', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const data = randomBytes(2 * PIECE)
    const seed = new FakePeer('seed', data)
    seed.deferred.set(0, Date.now() + 600)
    const t = new Transfer(
      { digest: digestOf(data), size: data.length, peerRequestsPerPeer: 4 },
      { store, logger: silentLogger(), origin: noOrigin, swarm: fakeSwarm([seed]) },
    )
    const started = Date.now()
    await t.start()
    await waitFor('a request', () => seed.asked.length === 1)
    assert.equal(seed.asked[0]?.index, 1, 'the deferred piece was asked first')
    seed.asked[0]?.answer(seed.piece(1))
    await waitFor('the deferred piece', () => seed.asked.length === 2, 3000)
    assert.equal(seed.asked[1]?.index, 0)
    const waited = (seed.asked[1]?.at ?? 0) - started
    assert.ok(waited >= 550, `asked again after ${waited} ms`)
    seed.asked[1]?.answer(seed.piece(0))
    await within(5000, t.done, 'done')
  })

  test('peerRequestTimeoutMs bounds a request even while the peer sends', { timeout: TEST_TIMEOUT }, async () => {
    const data = randomBytes(PIECE)
    const busy = new FakePeer('busy', data)
    const swarm = fakeSwarm([busy])
    const t = new Transfer(
      {
        digest: digestOf(data),
        size: data.length,
        peerStallMs: 10_000,
        peerRequestTimeoutMs: 500,
        peerRequestsPerPeer: 1,
      },
      { store, logger: silentLogger(), origin: noOrigin, swarm },
    )
    await t.start()
    await waitFor('a request', () => busy.asked.length === 1)
    const feeding = setInterval(() => {
      busy.lastDataAt = Date.now()
    }, 50)
    try {
      await waitFor('the bound', () => busy.asked[0]?.abortedAt !== undefined, 3000)
      await waitFor('a second request', () => busy.asked.length === 2)
      busy.asked[1]?.answer(busy.piece(0))
      await within(5000, t.done, 'done')
    } finally {
      clearInterval(feeding)
    }
  })

  const PIECES = 8

  /**
   * Self and three other downloaders, named so that self is the rendezvous owner of at least
   * three of the blob's pieces and each of the others of one at least (a bounded search over
   * names): four fetchers. Each other downloader's pieces are either held by it already
   * (`othersDone`) or claimed by it and still coming from the origin.
   */
  async function herd(othersDone: boolean) {
    // 'self' is fixed: for about one blob in 300 it wins too few pieces against any names (the
    // search then failed), so the blob is drawn again too.
    let data = randomBytes(PIECES * PIECE)
    let digest = digestOf(data)
    let ids: string[] = []
    let owners: string[] = []
    for (let k = 0; k < 1000; k++) {
      if (k % 100 === 99) {
        data = randomBytes(PIECES * PIECE)
        digest = digestOf(data)
      }
      ids = ['self', `a${k}`, `b${k}`, `c${k}`]
      owners = Array.from({ length: PIECES }, (_, i) =>
        ids.reduce((best, id) =>
          rendezvousScore(id, digest.value, i) > rendezvousScore(best, digest.value, i) ? id : best,
        ),
      )
      if (owners.filter((o) => o === 'self').length >= 3 && new Set(owners).size === ids.length) break
    }
    const mine = owners.filter((o) => o === 'self').length
    assert.ok(
      mine >= 3 && new Set(owners).size === ids.length,
      'names found that give self three pieces, each other one',
    )
    const others = ids.slice(1).map((id) => new Downloader(id))
    owners.forEach((o, i) => {
      if (othersDone) others.find((d) => d.id === o)?.holds.add(i)
    })
    const swarm: BlobSwarm = {
      ...fakeSwarm([]),
      peers: () => others,
      request: (_peer, _index, signal) => untilAborted(signal),
      claimOf: (i) => (owners[i] === 'self' ? undefined : { peer: owners[i] as string, at: Date.now() }),
    }
    const gate = deferred()
    const origin = MemorySource.of(data, () => ({ pauseAt: 0, gate: gate.promise }))
    // Every origin request waits at its first byte until the test lets them go.
    const t = new Transfer(
      { digest, size: data.length, claimSettleMs: 0 },
      { store, logger: silentLogger(), origin, swarm },
    )
    return { t, origin, gate, mine }
  }

  test('origin slots: while other downloaders still fetch their pieces, one origin stream of this node', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const { t, origin, gate } = await herd(false)
    await t.start()
    await waitFor('an origin request', () => origin.calls.length === 1)
    await sleep(600)
    assert.equal(origin.calls.length, 1, 'one request at a time: four nodes share the origin')
    gate.resolve()
    t.abort(new ShoalError('ABORTED', 'test over'))
    await assert.rejects(within(5000, t.done, 'done'), isCode('ABORTED'))
  })

  test('origin slots: when this node alone still has pieces to fetch, it takes the whole share of the origin', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const { t, origin, gate, mine } = await herd(true)
    await t.start()
    // The others hold their pieces: the origin's four streams are this node's.
    await waitFor(`${Math.min(mine, 4)} origin requests at once`, () => origin.calls.length >= Math.min(mine, 4))
    gate.resolve()
    await waitFor('its pieces', () => [0, 1, 2, 3, 4, 5, 6, 7].filter((i) => t.has(i)).length === mine)
    // The others' pieces would come from them (they answer nothing here).
    t.abort(new ShoalError('ABORTED', 'test over'))
    await assert.rejects(within(5000, t.done, 'done'), isCode('ABORTED'))
  })

  test('a piece of a downloader that left waits ownerChangeWaitMs for its new owner to claim it, then is taken', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    // Two pieces; names such that x owns piece 0, z piece 1, and without z, x piece 1 (not self).
    let data = randomBytes(2 * PIECE)
    let digest = digestOf(data)
    let x = ''
    let z = ''
    const top = (ids: string[], i: number) =>
      ids.reduce((b, id) => (rendezvousScore(id, digest.value, i) > rendezvousScore(b, digest.value, i) ? id : b))
    for (let k = 0; k < 2000; k++) {
      if (k % 200 === 199) {
        data = randomBytes(2 * PIECE)
        digest = digestOf(data)
      }
      ;[x, z] = [`x${k}`, `z${k}`]
      if (top(['self', x, z], 0) === x && top(['self', x, z], 1) === z && top(['self', x], 1) === x) break
    }
    assert.equal(top(['self', x], 1), x, 'names found')
    let peers: SwarmPeer[] = [new Downloader(x), new Downloader(z)]
    const swarm: BlobSwarm = {
      ...fakeSwarm([]),
      peers: () => peers,
      request: (_peer, _index, signal) => untilAborted(signal),
      // x claims its piece and never piece 1; z claims piece 1 while it is there.
      claimOf: (i) =>
        i === 0 ? { peer: x, at: Date.now() } : peers.length === 2 ? { peer: z, at: Date.now() } : undefined,
    }
    const origin = MemorySource.of(data, () => ({ pauseAt: 0, gate: new Promise<void>(() => {}) }))
    const t = new Transfer(
      { digest, size: data.length, claimSettleMs: 0, ownerWaitMs: 100, ownerChangeWaitMs: 1500 },
      { store, logger: silentLogger(), origin, swarm },
    )
    await t.start()
    await sleep(400)
    assert.equal(origin.calls.length, 0, 'both pieces claimed by their owners')
    peers = [new Downloader(x)]
    const left = Date.now()
    await sleep(900)
    assert.equal(origin.calls.length, 0, "piece 1's new owner (seen long ago) gets a moment to claim it")
    await waitFor('piece 1 taken once its new owner did not claim it', () => origin.calls.length === 1, 3000)
    assert.equal((origin.calls[0] as { start: number }).start, PIECE)
    assert.ok(Date.now() - left >= 1400, `taken ${Date.now() - left} ms after z left`)
    t.abort(new ShoalError('ABORTED', 'test over'))
    await assert.rejects(within(5000, t.done, 'done'), isCode('ABORTED'))
  })
})

describe('Transfer: taking over pieces queued at other downloaders', () => {
  let root: string
  let store: BlobStore
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'shoal-unit-takeover-'))
    store = createStore({ dataDir: join(root, 'data') })
    await store.open()
  })
  afterEach(async () => {
    await store.close()
    await rm(root, { recursive: true, force: true })
  })

  const PIECES = 8
  type Claim = ({ peer: string; at: number } & ClaimKind) | undefined

  /**
   * Self and the given peers (holding nothing), every origin request held at its first byte until
   * `gate` opens; records what self announces, withdraws and yields. `yieldedTo`: the owners'
   * go-aheads (none: owners that never say, so a taker goes after `takeoverWaitMs`).
   */
  function setup(
    peers: SwarmPeer[],
    claimOf: (i: number) => Claim,
    takeoverWaitMs = 0,
    data = randomBytes(PIECES * PIECE),
    yieldedTo?: (i: number) => string | undefined,
    laggingPieces?: number,
  ) {
    const claims: { index: number; kind: ClaimKind }[] = []
    const withdrawn: number[] = []
    const yielded: [number, string][] = []
    const swarm: BlobSwarm = {
      ...fakeSwarm([]),
      peers: () => peers,
      request: (_peer, _index, signal) => untilAborted(signal),
      announceClaim: (index, kind = {}) => {
        claims.push({ index, kind })
      },
      withdrawClaim: (index) => {
        withdrawn.push(index)
      },
      yieldClaim: (index, taker) => {
        yielded.push([index, taker])
      },
      ...(yieldedTo === undefined ? {} : { yieldedTo }),
      claimOf,
    }
    const gate = deferred()
    const origin = MemorySource.of(data, () => ({ pauseAt: 0, gate: gate.promise }))
    const t = new Transfer(
      { digest: digestOf(data), size: data.length, claimSettleMs: 0, takeoverWaitMs, laggingPieces },
      { store, logger: silentLogger(), origin, swarm },
    )
    const pieceOf = (call: { start: number }) => call.start / PIECE
    return { t, origin, gate, claims, withdrawn, yielded, pieceOf }
  }

  /** Queues of pieces claimed by other downloaders that have not started them. */
  const QUEUES: Record<string, number[]> = { a: [0, 1, 2, 3, 4], b: [5, 6, 7] }
  const ownerOf = (i: number): string => (QUEUES.a?.includes(i) ? 'a' : 'b')
  const queued = (i: number): Claim => ({ peer: ownerOf(i), at: Date.now(), queued: true })

  /** Waits for this node's first takeover claim: its piece. */
  async function firstTakeover(claims: { index: number; kind: ClaimKind }[]): Promise<number> {
    await waitFor('a takeover', () => claims.some((c) => c.kind.takeover === true))
    return claims.find((c) => c.kind.takeover === true)?.index as number
  }

  test('a node with no origin pieces of its own takes over one from the back of the longest queue, one at a time', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const { t, origin, gate, claims, pieceOf } = setup([new Downloader('a'), new Downloader('b')], queued)
    await t.start()
    await waitFor('an origin request', () => origin.calls.length === 1)
    const first = pieceOf(origin.calls[0] as { start: number })
    assert.ok([2, 3, 4].includes(first), `${first}: from the back half of a's queue (0-4, the longest)`)
    assert.deepEqual(
      claims.filter((c) => c.index === first).map((c) => c.kind),
      [{ takeover: true }, {}],
      'claimed as a takeover, then as being fetched',
    )
    await sleep(600)
    assert.equal(origin.calls.length, 1, 'one piece taken over at a time')
    assert.ok(
      claims.every((c) => c.index === first),
      `nothing else claimed: ${JSON.stringify(claims)}`,
    )
    gate.resolve()
    await waitFor('the next takeover', () => origin.calls.length === 2)
    const second = pieceOf(origin.calls[1] as { start: number })
    assert.ok(second !== first && [1, 2, 3, 4].includes(second), `${second}: a's queue is still the longest (4)`)
    await endTransfer(t)
  })

  test('claims that do not say queued (nodes before takeovers) are never taken over', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const { t, origin, claims } = setup([new Downloader('a'), new Downloader('b')], (i) => ({
      peer: ownerOf(i),
      at: Date.now(),
    }))
    await t.start()
    await sleep(800)
    assert.equal(origin.calls.length, 0)
    assert.deepEqual(claims, [])
    await endTransfer(t)
  })

  test("a takeover stands back when the queue's owner starts the piece first", {
    timeout: TEST_TIMEOUT,
  }, async () => {
    let started: number | undefined
    const { t, origin, claims, withdrawn, pieceOf } = setup(
      [new Downloader('a'), new Downloader('b')],
      (i) => (i === started ? { peer: ownerOf(i), at: Date.now() } : queued(i)),
      300,
    )
    await t.start()
    // Within the settle time the owner's claim says it fetches that piece now.
    started = await firstTakeover(claims)
    await waitFor('an origin request', () => origin.calls.length >= 1, 3000)
    assert.ok(
      origin.calls.every((c) => pieceOf(c) !== started),
      `piece ${started} left to its owner: ${origin.calls.map(pieceOf)}`,
    )
    assert.ok(withdrawn.includes(started as number))
    await endTransfer(t)
  })

  test('a node leaves a queued piece of its own to a node that took it over', { timeout: TEST_TIMEOUT }, async () => {
    // A peer that does not download: self owns every piece and fetches four at a time.
    const seed: SwarmPeer = new Downloader('a', false)
    let taken = false
    // A blob for which self outranks 'a' on piece 6: two plain claims would leave it to self.
    let data = randomBytes(PIECES * PIECE)
    for (let k = 0; k < 100; k++) {
      const d = digestOf(data).value
      if (rendezvousScore('self', d, 6) > rendezvousScore('a', d, 6)) break
      data = randomBytes(PIECES * PIECE)
    }
    const { t, origin, gate, claims, withdrawn, yielded, pieceOf } = setup(
      [seed],
      (i) => (i === 6 && taken ? { peer: 'a', at: Date.now(), takeover: true } : undefined),
      0,
      data,
    )
    await t.start()
    await waitFor('four origin requests', () => origin.calls.length === 4)
    assert.ok(
      claims.some((c) => c.index === 6 && c.kind.queued === true),
      `piece 6 claimed as queued: ${JSON.stringify(claims)}`,
    )
    taken = true
    gate.resolve()
    await waitFor('every piece but 6', () => [0, 1, 2, 3, 4, 5, 7].every((i) => t.has(i)))
    await sleep(300)
    assert.ok(
      origin.calls.every((c) => pieceOf(c) !== 6),
      `6 not fetched: ${origin.calls.map(pieceOf)}`,
    )
    assert.deepEqual(yielded, [[6, 'a']], 'left to the taker, which is told so')
    assert.ok(!withdrawn.includes(6), 'yielded, not just withdrawn')
    assert.equal(t.has(6), false)
    await endTransfer(t)
  })

  test("a taker fetches on the owner's go-ahead, not before", { timeout: TEST_TIMEOUT }, async () => {
    let goAhead: number | undefined
    const { t, origin, claims, pieceOf } = setup(
      [new Downloader('a'), new Downloader('b')],
      queued,
      60_000,
      undefined,
      (i) => (i === goAhead ? 'self' : undefined),
    )
    await t.start()
    const taken = await firstTakeover(claims)
    await sleep(700)
    assert.equal(origin.calls.length, 0, 'no fetch without the go-ahead')
    goAhead = taken
    await waitFor('the fetch', () => origin.calls.length === 1)
    assert.equal(pieceOf(origin.calls[0] as { start: number }), taken)
    await endTransfer(t)
  })

  test("a taker whose owner's claim is gone (the owner left) fetches at once", { timeout: TEST_TIMEOUT }, async () => {
    let gone: number | undefined
    const { t, origin, claims, pieceOf } = setup(
      [new Downloader('a'), new Downloader('b')],
      (i) => (i === gone ? undefined : queued(i)),
      60_000,
    )
    await t.start()
    const taken = await firstTakeover(claims)
    await sleep(500)
    assert.equal(origin.calls.length, 0, 'no fetch while the owner may still answer')
    gone = taken
    await waitFor('the fetch', () => origin.calls.length === 1, 2000)
    assert.equal(pieceOf(origin.calls[0] as { start: number }), taken)
    await endTransfer(t)
  })

  test("a node ahead takes over a lagging downloader's queued piece before its own queue is done, and fetches it first", {
    timeout: TEST_TIMEOUT,
  }, async () => {
    // 'a' does not download: self owns every piece but 0 and 1, which 'a' has queued.
    let goAhead: number | undefined
    const { t, origin, gate, claims, pieceOf } = setup(
      [new Downloader('a', false)],
      (i) => (i <= 1 ? { peer: 'a', at: Date.now(), queued: true } : undefined),
      60_000,
      undefined,
      (i) => (i === goAhead ? 'self' : undefined),
      2,
    )
    await t.start()
    await waitFor('four origin requests', () => origin.calls.length === 4)
    assert.deepEqual(origin.calls.map(pieceOf), [2, 3, 4, 5])
    // Self started piece 5; 0 and 1 lie two or more before it, still queued at 'a'.
    const taken = await firstTakeover(claims)
    assert.ok([0, 1].includes(taken), `${taken}: one of a's lagging pieces`)
    assert.ok(
      claims.some((c) => c.index === 6 && c.kind.queued === true) && !t.has(6),
      'while self still has pieces of its own queued',
    )
    await sleep(400)
    assert.equal(claims.filter((c) => c.kind.takeover === true).length, 1, 'one lagging piece at a time')
    goAhead = taken
    gate.resolve()
    await waitFor('six origin requests', () => origin.calls.length >= 6)
    assert.equal(
      pieceOf(origin.calls[4] as { start: number }),
      taken,
      `fetched before 6 and 7: ${origin.calls.map(pieceOf)}`,
    )
    await endTransfer(t)
  })

  test('queued pieces of others within `laggingPieces` of what self fetches are left to them', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const { t, origin, claims } = setup(
      [new Downloader('a', false)],
      (i) => (i <= 1 ? { peer: 'a', at: Date.now(), queued: true } : undefined),
      0,
      undefined,
      undefined,
      8,
    )
    await t.start()
    await waitFor('four origin requests', () => origin.calls.length === 4)
    await sleep(600)
    assert.ok(
      claims.every((c) => c.kind.takeover !== true),
      `no takeover: ${JSON.stringify(claims)}`,
    )
    await endTransfer(t)
  })

  test('a taker stands back when the owner left the piece to another taker', { timeout: TEST_TIMEOUT }, async () => {
    let other: number | undefined
    const { t, origin, claims, withdrawn } = setup(
      [new Downloader('a'), new Downloader('b')],
      // The other taker's claim: a takeover, which before the go-ahead does not decide anything.
      (i) => (i === other ? { peer: 'c', at: Date.now(), takeover: true } : queued(i)),
      60_000,
      undefined,
      (i) => (i === other ? 'c' : undefined),
    )
    await t.start()
    other = await firstTakeover(claims)
    await waitFor('standing back', () => withdrawn.includes(other as number))
    await sleep(300)
    assert.equal(origin.calls.length, 0)
    await endTransfer(t)
  })
  test("two takers without the owner's word: this one fetches after the wait, though the other ranks higher", {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const data = randomBytes(PIECES * PIECE)
    const digest = digestOf(data).value
    // A peer name that rendezvous ranks above this node for piece i.
    const above = (i: number): string => {
      for (let n = 0; n < 1000; n++) {
        if (rendezvousScore(`t${n}`, digest, i) > rendezvousScore('self', digest, i)) return `t${n}`
      }
      throw new Error('no peer ranks higher')
    }
    let taken: number | undefined
    const { t, origin, claims, withdrawn, pieceOf } = setup(
      [new Downloader('a'), new Downloader('b')],
      (i) => (i === taken ? { peer: above(i), at: Date.now(), takeover: true } : queued(i)),
      300,
      data,
    )
    await t.start()
    taken = await firstTakeover(claims)
    await waitFor('the origin request', () => origin.calls.some((c) => pieceOf(c) === taken), 3_000)
    assert.ok(!withdrawn.includes(taken), 'no standing back')
    await endTransfer(t)
  })

  test('a taker stands back when another node says it fetches the piece now', { timeout: TEST_TIMEOUT }, async () => {
    let taken: number | undefined
    const { t, origin, claims, withdrawn, pieceOf } = setup(
      [new Downloader('a'), new Downloader('b')],
      // A taker that started it: heard as a takeover whose last Claim says it fetches it.
      (i) => (i === taken ? { peer: 'c', at: Date.now(), takeover: true, fetching: true } : queued(i)),
      300,
    )
    await t.start()
    taken = await firstTakeover(claims)
    await waitFor('standing back', () => withdrawn.includes(taken as number))
    await sleep(600)
    assert.ok(
      origin.calls.every((c) => pieceOf(c) !== taken),
      `piece ${taken} not fetched: ${origin.calls.map(pieceOf)}`,
    )
    await endTransfer(t)
  })

  test('a piece taken over goes to the origin before pieces of its own that came later', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    // One origin slot for the node, held by another transfer while this one has a takeover
    // waiting for its go-ahead and then gets pieces of its own (handed to it, lower in the blob).
    const gate = new OriginGate(1)
    const other = {}
    let taken: number | undefined
    let handed = false
    const claims: { index: number; kind: ClaimKind }[] = []
    const data = randomBytes(PIECES * PIECE)
    const swarm: BlobSwarm = {
      ...fakeSwarm([]),
      peers: () => [new Downloader('a'), new Downloader('b')],
      request: (_peer, _index, signal) => untilAborted(signal),
      announceClaim: (index, kind = {}) => {
        claims.push({ index, kind })
      },
      claimOf: (i) => (handed && i < 2 ? undefined : queued(i)),
      yieldedTo: (i) => (handed && i === taken ? 'self' : undefined),
      takeHandOff: (i) => handed && i < 2,
    }
    const origin = MemorySource.of(data, () => ({ pauseAt: 0, gate: new Promise<void>(() => {}) }))
    const t = new Transfer(
      { digest: digestOf(data), size: data.length, claimSettleMs: 0, takeoverWaitMs: 60_000 },
      { store, logger: silentLogger(), origin, swarm, originGate: gate },
    )
    await t.start()
    taken = await firstTakeover(claims)
    assert.ok(taken >= 2, `${taken}: from the back half of a's queue`)
    assert.ok(
      gate.tryTake(other, 0, 1, () => {}),
      "the other transfer's fetch holds the slot",
    )
    handed = true
    ;(swarm as ReturnType<typeof fakeSwarm>).changed()
    await waitFor('pieces 0 and 1 claimed as its own', () => [0, 1].every((i) => claims.some((c) => c.index === i)))
    assert.equal(origin.calls.length, 0, 'nothing fetched while the slot is taken')
    gate.release()
    await waitFor('an origin request', () => origin.calls.length === 1)
    assert.equal((origin.calls[0] as { start: number }).start / PIECE, taken, 'the taken-over piece first')
    await endTransfer(t)
  })
})

describe('Transfer: queued pieces handed to downloaders that came later', () => {
  let root: string
  let store: BlobStore
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'shoal-unit-handoff-'))
    store = createStore({ dataDir: join(root, 'data') })
    await store.open()
  })
  afterEach(async () => {
    await store.close()
    await rm(root, { recursive: true, force: true })
  })

  const PIECES = 16
  type Claim = ({ peer: string; at: number } & ClaimKind) | undefined

  /** The downloader the rendezvous picks for piece `i` of `digest` among `ids`. */
  function ownerOf(digest: string, i: number, ids: string[]): string {
    return ids.reduce((a, b) => (rendezvousScore(b, digest, i) > rendezvousScore(a, digest, i) ? b : a))
  }

  /** A blob of `PIECES` pieces for which `want` holds (bounded search over random blobs). */
  function blobWhere(want: (digest: string) => boolean): Buffer {
    for (let k = 0; k < 500; k++) {
      const data = randomBytes(PIECES * PIECE)
      if (want(digestOf(data).value)) return data
    }
    throw new Error('no blob found for the test')
  }

  /**
   * Self with `peers`, every origin request held at its first byte; the swarm keeps the claims
   * self hands off as the new owner's (as the exchange does) and records them.
   */
  function setup(
    peers: SwarmPeer[],
    data: Buffer,
    opts: Partial<TransferInit> = {},
    heard: (i: number) => Claim = () => undefined,
    handedHere = new Set<number>(),
  ) {
    const claims: { index: number; kind: ClaimKind }[] = []
    const handed = new Map<number, string>()
    const swarm = {
      ...fakeSwarm([]),
      peers: () => peers,
      request: (_peer: SwarmPeer, _index: number, signal: AbortSignal) => untilAborted(signal),
      announceClaim: (index: number, kind: ClaimKind = {}) => {
        claims.push({ index, kind })
      },
      handOffClaim: (index: number, to: string) => {
        handed.set(index, to)
        return true
      },
      takeHandOff: (index: number) => handedHere.delete(index),
      claimOf: (i: number): Claim => {
        const to = handed.get(i)
        return to === undefined ? heard(i) : { peer: to, at: Date.now(), queued: true }
      },
    } satisfies BlobSwarm & { changed(): void }
    const gate = deferred()
    const origin = MemorySource.of(data, () => ({ pauseAt: 0, gate: gate.promise }))
    const t = new Transfer(
      { digest: digestOf(data), size: data.length, claimSettleMs: 0, ...opts },
      { store, logger: silentLogger(), origin, swarm },
    )
    const pieceOf = (call: { start: number }) => call.start / PIECE
    return { t, swarm, origin, gate, claims, handed, pieceOf }
  }

  test('queued pieces go to the downloader that came later and owns them; those being fetched stay', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    // 'n' takes hand-offs, 'o' is a node that predates them. Self alone claims all 16 pieces and
    // fetches 0-3 (its four origin slots); 4-15 wait.
    const ids = ['self', 'n', 'o']
    const data = blobWhere((d) => {
      const owners = Array.from({ length: PIECES }, (_, i) => ownerOf(d, i, ids))
      const queuedOwners = owners.slice(4)
      return owners.slice(0, 4).includes('n') && queuedOwners.includes('n') && queuedOwners.includes('o')
    })
    const digest = digestOf(data).value
    const n = new Downloader('n', false, true)
    const o = new Downloader('o', false, false)
    const { t, swarm, origin, claims, handed, pieceOf } = setup([n, o], data)
    await t.start()
    await waitFor('four origin requests', () => origin.calls.length === 4)
    await waitFor('every piece claimed', () => new Set(claims.map((c) => c.index)).size === PIECES)
    assert.deepEqual(origin.calls.map(pieceOf), [0, 1, 2, 3])

    n.downloading = true
    o.downloading = true
    swarm.changed()
    const expected = Array.from({ length: PIECES }, (_, i) => i).filter(
      (i) => i >= 4 && ownerOf(digest, i, ids) === 'n',
    )
    await waitFor('the hand-offs', () => handed.size === expected.length)
    assert.deepEqual(
      [...handed.keys()].sort((a, b) => a - b),
      expected,
    )
    assert.ok([...handed.values()].every((to) => to === 'n'))
    // Nothing handed to 'o' (it does not take them), nor any piece being fetched.
    const before = claims.length
    await sleep(300)
    swarm.changed()
    await sleep(100)
    assert.ok(
      claims.slice(before).every((c) => !handed.has(c.index)),
      `handed pieces not claimed again: ${JSON.stringify(claims.slice(before))}`,
    )
    assert.deepEqual(origin.calls.map(pieceOf), [0, 1, 2, 3])
    await endTransfer(t)
  })

  test('a piece handed here is claimed as this node’s own, and handed on to a downloader that ranks higher', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    // 'h' claimed every piece while alone and handed piece k to self (it did not see 'a' yet);
    // self sees 'a', which outranks it on k.
    const ids = ['self', 'h', 'a']
    let k = -1
    const data = blobWhere((d) => {
      k = Array.from({ length: PIECES }, (_, i) => i).findIndex(
        (i) => ownerOf(d, i, ids) === 'a' && rendezvousScore('self', d, i) > rendezvousScore('h', d, i),
      )
      return k >= 0
    })
    const h = new Downloader('h', true, true)
    const a = new Downloader('a', true, true)
    const heard = (i: number): Claim => (i === k ? undefined : { peer: 'h', at: Date.now(), queued: true })
    const { t, swarm, origin, claims, handed } = setup([h, a], data, { claimSettleMs: 1000 }, heard, new Set([k]))
    await t.start()
    await waitFor('the handed piece claimed', () => claims.some((c) => c.index === k && c.kind.queued === true))
    assert.ok(
      claims.every((c) => c.index === k),
      `no piece but k claimed: ${JSON.stringify(claims)}`,
    )
    swarm.changed()
    await waitFor('handed on', () => handed.get(k) === 'a')
    await sleep(1200)
    swarm.changed()
    await sleep(100)
    assert.equal(origin.calls.length, 0, 'not fetched here')
    await endTransfer(t)
  })

  test('a piece taken because its owner was slow to claim it is not handed back', {
    timeout: TEST_TIMEOUT,
  }, async () => {
    // 'w' downloads but never claims: after ownerWaitMs self takes its pieces. Then 'n' comes.
    const ids = ['self', 'w', 'n']
    const data = blobWhere((d) => {
      const before = Array.from({ length: PIECES }, (_, i) => ownerOf(d, i, ['self', 'w']))
      const after = Array.from({ length: PIECES }, (_, i) => ownerOf(d, i, ids))
      const own = before.map((o, i) => (o === 'self' ? i : -1)).filter((i) => i >= 0)
      // Self's own pieces beyond its first four (queued), some of them 'n''s now; and some of
      // 'w''s pieces 'n''s now.
      return own.slice(4).some((i) => after[i] === 'n') && before.some((o, i) => o === 'w' && after[i] === 'n')
    })
    const digest = digestOf(data).value
    const w = new Downloader('w', true, true)
    const n = new Downloader('n', false, true)
    const { t, swarm, origin, claims, handed, pieceOf } = setup([w, n], data, { ownerWaitMs: 100 })
    await t.start()
    await waitFor('every piece claimed', () => new Set(claims.map((c) => c.index)).size === PIECES)
    n.downloading = true
    swarm.changed()
    await waitFor('the hand-offs', () => handed.size > 0)
    await sleep(200)
    // Self's own pieces that 'n' owns now and that are not being fetched; none of 'w''s.
    const fetched = new Set(origin.calls.map(pieceOf))
    const expected = Array.from({ length: PIECES }, (_, i) => i).filter(
      (i) => ownerOf(digest, i, ['self', 'w']) === 'self' && ownerOf(digest, i, ids) === 'n' && !fetched.has(i),
    )
    assert.deepEqual(
      [...handed.keys()].sort((a, b) => a - b),
      expected,
      'only pieces self claimed as their owner',
    )
    await endTransfer(t)
  })
})

describe('rendezvousScore', () => {
  test('deterministic, and different per peer, digest and piece', () => {
    const d = `sha256:${'a'.repeat(64)}`
    assert.equal(rendezvousScore('peer-a', d, 0), rendezvousScore('peer-a', d, 0))
    const scores = new Set([
      rendezvousScore('peer-a', d, 0),
      rendezvousScore('peer-b', d, 0),
      rendezvousScore('peer-a', d, 1),
      rendezvousScore('peer-a', `sha256:${'b'.repeat(64)}`, 0),
    ])
    assert.equal(scores.size, 4)
    assert.equal(typeof rendezvousScore('p', d, 0), 'bigint')
  })
})

/** Another downloader of the blob: holds the pieces in `holds`, answers no request. */
class Downloader implements SwarmPeer {
  inflight = 0
  throughput = 0
  busyUntil = 0
  lastDataAt = 0
  readonly holds = new Set<number>()
  constructor(
    readonly id: string,
    /** A test may make it start downloading later. */
    public downloading = true,
    readonly takesHandoffs = false,
  ) {}
  has(index: number): boolean {
    return this.holds.has(index)
  }
  hashOf(): undefined {
    return undefined
  }
  deferredUntil(): number {
    return 0
  }
}
