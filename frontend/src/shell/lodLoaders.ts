// Cached loaders for the level-of-detail routes (data/lod.ts), beside the shell's whole-layer loaders (loaders.ts).
// One instance per bundle, like the transport: the probe is always passed, so the shell need not know them. The
// token subset (special tokens hidden, query filter) is not applied here: thumbnails, top-k and tiles are in probe
// positions, and the views that draw them say so when a subset is chosen.

import type { Manifest, QK } from "../data/api";
import { LruCache } from "../data/cache";
import { fetchLod, fetchQKHead, fetchTile, fetchTopK, type Lod, type Tile, type TopK } from "../data/lod";
import { fetchManifest } from "../data/api";
import type { ProbeRef } from "./view";

const key = (...parts: (string | number)[]): string => JSON.stringify(parts);

/** How many decoded tiles the page keeps (256 × 64 KB of codes = 16 MB). */
export const TILE_CACHE = 256;

class LodLoaders {
  private readonly lods = new LruCache<Lod>(256, 64 << 20, (x) => x.thumbs.byteLength);
  private readonly topks = new LruCache<TopK>(16, 96 << 20, (x) => x.keys.byteLength + x.codes.byteLength);
  private readonly tiles = new LruCache<Tile>(TILE_CACHE, Infinity, () => 0);
  private readonly qkHeads = new LruCache<QK>(8, 96 << 20, (x) => x.queries.byteLength + x.keys.byteLength);
  private readonly manifests = new LruCache<Manifest>(16, Infinity, () => 0);

  /** The step's manifest without any token subset (the positions the routes below use). */
  manifest(probe: ProbeRef, step: number): Promise<Manifest> {
    return this.manifests.get(key(probe.run, probe.tag, step), () => fetchManifest(probe.run, probe.tag, step));
  }

  lod(probe: ProbeRef, step: number, layer: number, size = 64): Promise<Lod> {
    const { run, tag } = probe;
    return this.lods.get(key(run, tag, step, layer, size), () => fetchLod({ run, tag, step, layer }, size));
  }

  /** Every head's top-k (head undefined), or one head's (a "qk" layer must be asked one head at a time). */
  topk(probe: ProbeRef, step: number, layer: number, head?: number): Promise<TopK> {
    const { run, tag } = probe;
    return this.topks.get(key(run, tag, step, layer, head ?? -1), () => fetchTopK({ run, tag, step, layer }, head));
  }

  tile(probe: ProbeRef, step: number, layer: number, head: number, level: number, row: number, col: number) {
    const { run, tag } = probe;
    return this.tiles.get(key(run, tag, step, layer, head, level, row, col), () =>
      fetchTile({ run, tag, step, layer }, head, level, row, col),
    );
  }

  /** Whether a tile is cached (or on its way): the matrix view asks before it queues a request. */
  hasTile(probe: ProbeRef, step: number, layer: number, head: number, level: number, row: number, col: number) {
    return this.tiles.has(key(probe.run, probe.tag, step, layer, head, level, row, col));
  }

  qkHead(probe: ProbeRef, step: number, layer: number, head: number): Promise<QK> {
    const { run, tag } = probe;
    return this.qkHeads.get(key(run, tag, step, layer, head), () => fetchQKHead({ run, tag, step, layer }, head));
  }
}

export const lodLoaders = new LodLoaders();
