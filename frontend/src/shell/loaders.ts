// The loaders behind ViewHost.manifest / attention / attentionHead / qk / headStats. The raw routes are cached
// (LRU of promises, so a prefetch and the real request share one fetch); the token subset (special tokens
// hidden, query search) is applied on top of every load, uncached: it is cheap next to a fetch.

import {
  fetchAttention,
  fetchHeadStats,
  fetchManifest,
  fetchQK,
  type Attention,
  type HeadStats,
  type Manifest,
  type QK,
} from "../data/api";
import { LruCache } from "../data/cache";
import {
  queryFilter,
  specialSubset,
  subsetAttention,
  subsetManifest,
  subsetQK,
  type SpecialMode,
  type Subset,
} from "../data/tokenFilter";
import { wholeLayerOk } from "../data/scale";
import { page } from "./page";
import type { ProbeRef } from "./view";

declare global {
  interface Window {
    /** Set by an exported HTML snapshot: only whole layers are embedded, so heads are sliced locally (so are a
     * notebook output's: `page().embedded`). */
    __tbaSnapshot?: boolean;
  }
}

const key = (...parts: (string | number)[]): string => JSON.stringify(parts);

/** What the toolbar currently asks to hide: read at the start of every load. */
export interface TokenChoice {
  mode: SpecialMode;
  filter: string;
}

export class Loaders {
  private readonly attentionCache = new LruCache<Attention>(48, 384 << 20, (a) => a.weights.byteLength);
  private readonly qkCache = new LruCache<QK>(24, 128 << 20, (q) => q.queries.byteLength + q.keys.byteLength);
  private readonly manifests = new LruCache<Manifest>(64, Infinity, () => 0);
  private readonly stats = new LruCache<HeadStats | null>(8, Infinity, () => 0);
  // The last manifest seen per probe: whether a whole layer is worth warming before its step's manifest is here.
  private readonly lastShape = new Map<string, Manifest>();

  constructor(private readonly tokens: () => TokenChoice) {}

  // Raw loads (no subset): the shell prefetches these, so they warm the cache whatever the token choice.
  rawManifest(step: number, probe: ProbeRef): Promise<Manifest> {
    return this.manifests.get(key(probe.run, probe.tag, step), () =>
      fetchManifest(probe.run, probe.tag, step).then((m) => {
        this.lastShape.set(key(probe.run, probe.tag), m);
        return m;
      }),
    );
  }

  /**
   * Warms a whole layer (the shell's prefetch and early start) unless it is one the views would not load whole: a
   * long probe or a "qk" layer (data/scale.ts), hundreds of MB or a 413. Unknown shape: after its manifest.
   */
  warmLayer(step: number, layer: number, probe: ProbeRef): void {
    const warm = (m: Manifest): void => {
      if (m.metricsOnly) return; // no attention to warm (a metrics-only tag, data/api.ts)
      if (layer < m.num_layers && wholeLayerOk(m, layer)) this.rawAttention(step, layer, probe).catch(() => undefined);
    };
    const known = this.lastShape.get(key(probe.run, probe.tag));
    if (known) warm(known);
    else this.rawManifest(step, probe).then(warm, () => undefined);
  }

  rawAttention(step: number, layer: number, probe: ProbeRef): Promise<Attention> {
    return this.attentionCache.get(key(probe.run, probe.tag, step, layer), () =>
      fetchAttention(probe.run, probe.tag, step, layer),
    );
  }

  private async subset(step: number, probe: ProbeRef): Promise<Subset | null> {
    const { mode, filter } = this.tokens();
    if (mode === "show" && !filter.trim()) return null;
    const m = await this.rawManifest(step, probe);
    return queryFilter(m, specialSubset(m, mode), filter);
  }

  async manifest(step: number, probe: ProbeRef): Promise<Manifest> {
    return subsetManifest(await this.rawManifest(step, probe), await this.subset(step, probe));
  }

  async attention(step: number, layer: number, probe: ProbeRef): Promise<Attention> {
    const [a, s] = await Promise.all([this.rawAttention(step, layer, probe), this.subset(step, probe)]);
    return subsetAttention(a, s);
  }

  async attentionHead(step: number, layer: number, head: number, probe: ProbeRef): Promise<Attention> {
    const layerKey = key(probe.run, probe.tag, step, layer);
    let one: Attention;
    // An HTML snapshot holds whole layers, except of long or "qk" layers (export/longParts.ts): the head shown.
    const known = this.lastShape.get(key(probe.run, probe.tag));
    const snapshotWhole = window.__tbaSnapshot && (!known || wholeLayerOk(known, layer));
    if (this.attentionCache.has(layerKey) || snapshotWhole || page().embedded) {
      const a = await this.rawAttention(step, layer, probe);
      if (head >= a.H) throw new Error(`head ${head} out of range (${a.H} heads)`);
      const n = a.Q * a.K;
      one = { H: 1, Q: a.Q, K: a.K, weights: a.weights.subarray(head * n, (head + 1) * n) };
    } else {
      one = await this.attentionCache.get(key(probe.run, probe.tag, step, layer, "h", head), () =>
        fetchAttention(probe.run, probe.tag, step, layer, head),
      );
    }
    return subsetAttention(one, await this.subset(step, probe));
  }

  async qk(step: number, layer: number, probe: ProbeRef): Promise<QK> {
    const raw = this.qkCache.get(key(probe.run, probe.tag, step, layer), () =>
      fetchQK(probe.run, probe.tag, step, layer),
    );
    const [x, s] = await Promise.all([raw, this.subset(step, probe)]);
    return subsetQK(x, s);
  }

  headStats(probe: ProbeRef): Promise<HeadStats | null> {
    return this.stats.get(key(probe.run, probe.tag), () => fetchHeadStats(probe.run, probe.tag).catch(() => null));
  }

  /** New steps change the statistics series (Reload). */
  clearStats(): void {
    this.stats.clear();
  }
}
