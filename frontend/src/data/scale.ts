// When a view stops drawing from whole layers and draws from the level-of-detail routes instead (data/lod.ts,
// issue 12): a "qk" layer has no stored weights (the server refuses a whole one above 2^26 weights, and rebuilding
// even a small one costs a recompute), and at thousands of tokens one decoded layer is hundreds of MB in the page.

import type { LayerStorage, Manifest } from "./api";

/** Weights per head above which the matrix view draws tiles (1,024 × 1,024). */
export const TILE_WEIGHTS = 1024 * 1024;
/** Query length above which the head and neuron views stop loading whole layers. */
export const LONG_QUERIES = 512;
/** Heads (layers × heads) above which the model view draws server thumbnails (12 × 12). */
export const MANY_HEADS = 144;
/** The server's limit for a whole recompute-only layer (docs/http_api.md, `attention`: 413 above it). */
export const QK_LAYER_WEIGHTS = 2 ** 26;

type Shape = Pick<Manifest, "storage" | "num_layers" | "num_heads" | "query_len" | "key_len">;

export function storageOf(m: Pick<Manifest, "storage">, layer: number): LayerStorage {
  return m.storage?.[layer] ?? "weights";
}

/** The layer holds only q/k: its weights exist only as the server rebuilds them. */
export function isQkLayer(m: Pick<Manifest, "storage">, layer: number): boolean {
  return storageOf(m, layer) === "qk";
}

export function anyQkLayer(m: Pick<Manifest, "storage">): boolean {
  return !!m.storage?.includes("qk");
}

/** The matrix view draws this layer's heads as a tile pyramid. */
export function usesTiles(m: Shape, layer: number): boolean {
  return m.query_len * m.key_len > TILE_WEIGHTS || isQkLayer(m, layer);
}

/** The head view draws each query's top-k lines from the server instead of the whole layer. */
export function usesTopK(m: Shape, layer: number): boolean {
  return m.query_len > LONG_QUERIES || isQkLayer(m, layer);
}

/** The model view draws server thumbnails instead of line diagrams of every layer. */
export function usesThumbnails(m: Shape): boolean {
  return m.num_layers * m.num_heads > MANY_HEADS || m.query_len > LONG_QUERIES || anyQkLayer(m);
}

/** A whole layer of weights may be asked for: the server serves it and the page can hold it. */
export function wholeLayerOk(m: Shape, layer: number): boolean {
  const n = m.num_heads * m.query_len * m.key_len;
  return m.query_len <= LONG_QUERIES && (!isQkLayer(m, layer) || n <= QK_LAYER_WEIGHTS);
}

/** Why a part of a view is not drawn for this layer, for the view's note (or "" when it can be). */
export function wholeLayerNote(m: Shape, layer: number, what: string): string {
  if (wholeLayerOk(m, layer)) return "";
  const why = isQkLayer(m, layer)
    ? "this layer was stored as queries and keys only"
    : `${m.query_len.toLocaleString("en-US")} tokens is past the ${LONG_QUERIES}-token limit for whole layers`;
  return `${what} needs every weight of the layer, and ${why}: open the Matrix view for one head at a time.`;
}
