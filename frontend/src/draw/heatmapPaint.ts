// Painting a heatmap region into a canvas: the overview max-pools blocks of cells into pixels (max |v| keeping the
// sign when signed), so a single strong weight stays visible at 2,048 tokens where averaging would wash it out.

import { diverging, VIRIDIS, scaled } from "./colormap";
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
      let idx: number;
      if (signed) {
        const t = scaled(Math.abs(best) * inv, scale);
        idx = Math.round(127.5 + (best < 0 ? -t : t) * 127.5);
      } else {
        idx = Math.round(scaled(best * inv, scale) * 255);
      }
      const p = (y * W + x) * 4;
      const m = Math.min(255, Math.max(0, idx)) * 3;
      px[p] = map[m] as number;
      px[p + 1] = map[m + 1] as number;
      px[p + 2] = map[m + 2] as number;
      px[p + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}
