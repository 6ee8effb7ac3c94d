// Small LRU of promises keyed by string. Storing the promise (not the value) makes concurrent requests for
// the same key (a prefetch racing the real request) share one fetch. Bounded by entries and by bytes because
// one 12-head 512-token layer decodes to 12.6 MB.

export class LruCache<V> {
  private readonly map = new Map<string, { value: Promise<V>; bytes: number }>();

  constructor(
    private readonly maxEntries: number,
    private readonly maxBytes: number,
    private readonly sizeOf: (v: V) => number,
  ) {}

  get(key: string, load: () => Promise<V>): Promise<V> {
    const hit = this.map.get(key);
    if (hit) {
      this.map.delete(key); // re-insert: Map iteration order is our recency order
      this.map.set(key, hit);
      return hit.value;
    }
    const entry = { value: load(), bytes: 0 };
    this.map.set(key, entry);
    entry.value.then(
      (v) => {
        entry.bytes = this.sizeOf(v);
        this.evict();
      },
      // Failures are not cached: the next request retries.
      () => {
        if (this.map.get(key) === entry) this.map.delete(key);
      },
    );
    this.evict();
    return entry.value;
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  clear(): void {
    this.map.clear();
  }

  private evict(): void {
    let bytes = 0;
    for (const e of this.map.values()) bytes += e.bytes;
    // Never evict the newest entry: it is the one being asked for.
    for (const [key, e] of this.map) {
      if (this.map.size <= 1 || (this.map.size <= this.maxEntries && bytes <= this.maxBytes)) break;
      this.map.delete(key);
      bytes -= e.bytes;
    }
  }
}
