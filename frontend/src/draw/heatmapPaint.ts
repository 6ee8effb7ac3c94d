// Painting a heatmap region into a canvas: the overview max-pools blocks of cells into pixels (max |v| keeping the
// sign when signed), so a single strong weight stays visible at 2,048 tokens where averaging would wash it out.

import { diverging, VIRIDIS, scaled, type Scale } from "./colormap";
import type { VectorCanvas, VectorShape } from "../export/vector";
import type { HeatmapData, Region } from "./heatmap";

/** The largest |value| inside region `z` (the detail's colour range when "zoomed window" is chosen). */
export function regionMax(d: HeatmapData, z: Region): number {
  let m = 0;
  for (let i = z.q0; i < z.q1; i++) {
    const row = d.off + i * d.K;
    for (let j = z.k0; j < z.k1; j++) m = Math.max(m, Math.abs(d.values[row + j] as number));
  }
  return m;
}

/** Paints region `z` of `d` into canvas `c` at w × h CSS px, pooling or stretching cells as needed. */
export function paintRegion(
  c: HTMLCanvasElement,
  d: HeatmapData,
  z: Region,
  w: number,
  h: number,
  vmax = d.vmax,
): void {
  const dpr = Math.max(1, Math.min(2, window.devicePixelRatio || 1));
  const W = Math.round(w * dpr);
  const H = Math.round(h * dpr);
  c.width = W;
  c.height = H;
  c.style.width = `${w}px`;
  c.style.height = `${h}px`;
  const ctx = c.getContext("2d");
  if (!ctx) return;
  const img = ctx.createImageData(W, H);
  const px = img.data;
  const nq = z.q1 - z.q0;
  const nk = z.k1 - z.k0;
  const map = d.signed ? diverging() : VIRIDIS;
  const inv = vmax > 0 ? 1 / vmax : 0;
  const { values, off, K, signed, scale } = d;
  // Column ranges are the same for every pixel row: compute once.
  const ka = new Int32Array(W);
  const kb = new Int32Array(W);
  for (let x = 0; x < W; x++) {
    ka[x] = z.k0 + Math.floor((x * nk) / W);
    kb[x] = Math.max((ka[x] as number) + 1, z.k0 + Math.floor(((x + 1) * nk) / W));
  }
  for (let y = 0; y < H; y++) {
    const qa = z.q0 + Math.floor((y * nq) / H);
    const qb = Math.max(qa + 1, z.q0 + Math.floor(((y + 1) * nq) / H));
    for (let x = 0; x < W; x++) {
      let best = 0;
      for (let i = qa; i < qb; i++) {
        const row = off + i * K;
        for (let j = ka[x] as number; j < (kb[x] as number); j++) {
          const v = values[row + j] as number;
          if (Math.abs(v) > Math.abs(best)) best = v;
        }
      }
      const p = (y * W + x) * 4;
      const m = colourIndex(best, inv, signed, scale) * 3;
      px[p] = map[m] as number;
      px[p + 1] = map[m + 1] as number;
      px[p + 2] = map[m + 2] as number;
      px[p + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
  // The export redraws cells as vector rects (sharp at any PNG scale, real cells in SVG) while there are few enough.
  (c as VectorCanvas).tbaVector = () => (nq * nk <= VECTOR_CELLS ? cellShapes(d, z, w, h, map, inv) : null);
}

/** Heatmaps up to this many cells (128 × 128) export as vector cells; larger ones as an embedded PNG. */
export const VECTOR_CELLS = 128 * 128;

function colourIndex(v: number, inv: number, signed: boolean, scale: Scale): number {
  const idx = signed
    ? Math.round(127.5 + (v < 0 ? -1 : 1) * scaled(Math.abs(v) * inv, scale) * 127.5)
    : Math.round(scaled(v * inv, scale) * 255);
  return Math.min(255, Math.max(0, idx));
}

function cellShapes(
  d: HeatmapData,
  z: Region,
  w: number,
  h: number,
  map: Uint8ClampedArray,
  inv: number,
): VectorShape[] {
  const out: VectorShape[] = [];
  const cw = w / (z.k1 - z.k0);
  const ch = h / (z.q1 - z.q0);
  for (let i = z.q0; i < z.q1; i++) {
    for (let j = z.k0; j < z.k1; j++) {
      const m = colourIndex(d.values[d.off + i * d.K + j] as number, inv, d.signed, d.scale) * 3;
      // Each cell slightly overlaps its neighbours so SVG renderers leave no hairline gaps.
      out.push({
        rect: [(j - z.k0) * cw, (i - z.q0) * ch, cw + 0.02, ch + 0.02],
        color: `rgb(${map[m]},${map[m + 1]},${map[m + 2]})`,
        alpha: 1,
      });
    }
  }
  return out;
}
