/**
 * Values remembered for `ttlMs` under string keys, at most `max` of them: a value set again moves
 * to the back, and the oldest go first when there are too many (insertion order), whatever the
 * number of keys met.
 */
export class RecentMap<V> {
  private readonly entries = new Map<string, { at: number; value: V }>()

  constructor(
    private readonly ttlMs: number,
    private readonly max: number,
  ) {}

  get size(): number {
    return this.entries.size
  }

  /** The value set under `key` less than `ttlMs` before `now`, if any. */
  get(key: string, now = Date.now()): V | undefined {
    const e = this.entries.get(key)
    return e !== undefined && now - e.at < this.ttlMs ? e.value : undefined
  }

  delete(key: string): void {
    this.entries.delete(key)
  }

  set(key: string, value: V, now = Date.now()): void {
    this.entries.delete(key)
    this.entries.set(key, { at: now, value })
    for (const k of this.entries.keys()) {
      if (this.entries.size <= this.max) break
      this.entries.delete(k)
    }
  }
}
