// The level-of-detail routes (docs/http_api.md: `lod`, `topk`, `tile`, `qk?head=`): what the views draw from when a
// probe is too long (or a layer stored as q/k only) for whole layers. Every array comes coded as the server's
// overview, w = (code / 255)³ (absolute, no per-row scale), so one 256-entry table decodes them all.

import { getContainer, type QK } from "./api";

/** w = (code / 255)³ for every code of the lod / topk / tile routes. */
export const CODE_WEIGHT = Float32Array.from({ length: 256 }, (_, c) => (c / 255) ** 3);

/** Max-pooled thumbnails of every head of one layer (`lod`). */
export interface Lod {
  H: number;
  /** Rows (query cells) and columns (key cells) of each thumbnail. */
  Sq: number;
  Sk: number;
  /** [H, Sq, Sk] codes. */
  thumbs: Uint8Array;
  Q: number;
  K: number;
  source: string;
}

/** Each query's k largest weights (`topk`), for one head or every head of a layer. */
export interface TopK {
  /** Heads in the payload: 1 when asked for one head. */
  H: number;
  Q: number;
  k: number;
  /** [H, Q, k] key positions, descending weight. */
  keys: Int32Array;
  /** [H, Q, k] codes; 0 pads rows with fewer than k allowed keys. */
  codes: Uint8Array;
  source: string;
}

/** One 256 × 256 (or smaller, at the edges) max-pooled tile of one head (`tile`). */
export interface Tile {
  level: number;
  row: number;
  col: number;
  /** Cells of this tile (≤ 256 each). */
  h: number;
  w: number;
  codes: Uint8Array;
  /** The coarsest level (one tile holds the head). */
  levels: number;
  source: string;
}

/** The query/key shape and layer a level-of-detail request is about. */
export interface LodKey {
  run: string;
  tag: string;
  step: number;
  layer: number;
}

const text = (v: unknown): string => (typeof v === "string" ? v : "");

export async function fetchLod(k: LodKey, size = 64): Promise<Lod> {
  const c = await getContainer("lod", { ...k, size });
  const t = c.arrays["thumbs"];
  if (!t || t.dtype !== "uint8" || t.shape.length !== 3) throw new Error("lod: unexpected payload");
  const [H, Sq, Sk] = t.shape as [number, number, number];
  const Q = Number(c.meta["query_len"]);
  const K = Number(c.meta["key_len"]);
  return { H, Sq, Sk, thumbs: t.data as Uint8Array, Q, K, source: text(c.meta["source"]) };
}

export async function fetchTopK(k: LodKey, head?: number): Promise<TopK> {
  const c = await getContainer("topk", head === undefined ? { ...k } : { ...k, head });
  const keys = c.arrays["keys"];
  const codes = c.arrays["codes"];
  if (!keys || !codes || keys.shape.length !== 3 || codes.data.length !== keys.data.length)
    throw new Error("topk: unexpected payload");
  const [H, Q, n] = keys.shape as [number, number, number];
  const kk = keys.data instanceof Int32Array ? keys.data : Int32Array.from(keys.data);
  return { H, Q, k: n, keys: kk, codes: codes.data as Uint8Array, source: text(c.meta["source"]) };
}

export async function fetchTile(k: LodKey, head: number, level: number, row: number, col: number): Promise<Tile> {
  const c = await getContainer("tile", { ...k, head, level, row, col });
  const codes = c.arrays["codes"];
  if (!codes || codes.dtype !== "uint8" || codes.shape.length !== 2) throw new Error("tile: unexpected payload");
  const [h, w] = codes.shape as [number, number];
  const levels = Number(c.meta["levels"]);
  return { level, row, col, h, w, codes: codes.data as Uint8Array, levels, source: text(c.meta["source"]) };
}

/** What query head `head` reads: its queries [1, Q, D] and its key head's keys [1, K, D] (GQA resolved). */
export async function fetchQKHead(k: LodKey, head: number): Promise<QK> {
  const c = await getContainer("qk", { ...k, head });
  const q = c.arrays["queries"];
  const kk = c.arrays["keys"];
  if (!q || !kk || q.shape.length !== 3 || kk.shape.length !== 3) throw new Error("qk: unexpected payload");
  const [H, Q, D] = q.shape as [number, number, number];
  const [Hkv, K] = kk.shape as [number, number, number];
  const out: QK = { H, Hkv, Q, K, D, queries: q.data as Float32Array, keys: kk.data as Float32Array, meta: c.meta };
  // A relative-bias layer's position term: the neuron view's softmax needs it to match the rebuilt weights.
  const bias = c.arrays["bias"];
  if (bias) out.bias = bias.data as Float32Array;
  return out;
}
