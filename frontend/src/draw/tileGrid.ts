// The arithmetic of the tile pyramid (docs/http_api.md, `tile`): level ℓ pools 2^ℓ × 2^ℓ weights into one cell,
// a tile holds 256 × 256 cells, and the coarsest level holds the whole head in one tile. The map draws the level
// whose cells are at least one device pixel, so stretching a tile never drops a cell (a max-pooled maximum would
// vanish if a tile were drawn smaller than its cells).

import { CODE_WEIGHT } from "../data/lod";
import { scaled, type Scale } from "./colormap";

export const TILE = 256;

/** The coarsest level: one tile holds a Q × K head. */
export function coarsestLevel(Q: number, K: number): number {
  let l = 0;
  while (TILE * 2 ** l < Math.max(Q, K)) l++;
  return l;
}

/** The level to draw at `s` CSS px per weight: the finest whose cells are still ≥ 1 device pixel. */
export function levelFor(s: number, dpr: number, levels: number): number {
  const want = Math.ceil(Math.log2(1 / (s * dpr)) - 1e-6);
  return Math.max(0, Math.min(levels, want));
}

/** Tiles [first, last] of one axis at `level` that overlap the weights [a, b) of an axis of n weights. */
export function tileSpan(level: number, a: number, b: number, n: number): [number, number] {
  const side = TILE * 2 ** level;
  const lo = Math.max(0, a);
  const hi = Math.min(n, b);
  if (hi <= lo) return [0, -1];
  return [Math.floor(lo / side), Math.floor((hi - 1e-9) / side)];
}

/** Cells of tile (row, col) at `level` (edge tiles are smaller). */
export function tileCells(level: number, row: number, col: number, Q: number, K: number): { h: number; w: number } {
  const cell = 2 ** level;
  const h = Math.min(TILE, Math.ceil(Q / cell) - row * TILE);
  const w = Math.min(TILE, Math.ceil(K / cell) - col * TILE);
  return { h: Math.max(0, h), w: Math.max(0, w) };
}

/** RGBA for each code: the weight (code/255)³ on `map` over [0, vmax] through `scale`, as the heatmaps colour it. */
export function codeColors(map: Uint8ClampedArray, vmax: number, scale: Scale): Uint8ClampedArray {
  const out = new Uint8ClampedArray(256 * 4);
  const inv = vmax > 0 ? 1 / vmax : 0;
  for (let c = 0; c < 256; c++) {
    const i = Math.min(255, Math.max(0, Math.round(scaled((CODE_WEIGHT[c] as number) * inv, scale) * 255))) * 3;
    out.set([map[i] as number, map[i + 1] as number, map[i + 2] as number, 255], c * 4);
  }
  return out;
}

/** A tile's codes as a canvas of one pixel per cell (drawn scaled, without smoothing). */
export function tileCanvas(codes: Uint8Array, h: number, w: number, colors: Uint8ClampedArray): HTMLCanvasElement {
  const c = document.createElement("canvas");
  c.width = Math.max(1, w);
  c.height = Math.max(1, h);
  const ctx = c.getContext("2d");
  if (!ctx || w === 0 || h === 0) return c;
  const img = ctx.createImageData(w, h);
  const px = new Uint32Array(img.data.buffer);
  const lut = new Uint32Array(colors.buffer, colors.byteOffset, 256);
  for (let i = 0; i < w * h; i++) px[i] = lut[codes[i] as number] as number;
  ctx.putImageData(img, 0, 0);
  return c;
}

/** Largest code of a tile (the coarsest tile's is the head's largest weight: max-pooling keeps the maximum). */
export function maxCode(codes: Uint8Array): number {
  let m = 0;
  for (let i = 0; i < codes.length; i++) if ((codes[i] as number) > m) m = codes[i] as number;
  return m;
}
