// Thumbnail line diagram of one head (the model view's grid cell): queries on the left edge, keys on the right.
// Rows are binned to ~2 px so a 512-token head is ≤ ~3k short lines; a bin's line opacity is the bin's mean
// attention mass (a row-stochastic average), so thumbnails of short and long sequences read the same.

import { kthLargest } from "./topk";

const BUCKETS = 16;
const BUCKET_ALPHA = Float32Array.from({ length: BUCKETS }, (_, b) => Math.min(1, 2 ** ((b + 0.5) / 2) / 255));
const bucketOf = (a: number): number => Math.min(BUCKETS - 1, Math.max(0, Math.floor(Math.log2(a * 255) * 2)));

/**
 * Draws head `h` of `weights` ([H, Q, K]) into `ctx` (already scaled to CSS px), in a w × hgt box at (0, 0).
 * `topK` > 0 keeps only each query's k strongest keys.
 */
export function drawLineThumb(
  ctx: CanvasRenderingContext2D,
  weights: Float32Array,
  h: number,
  Q: number,
  K: number,
  w: number,
  hgt: number,
  color: string,
  topK: number,
): void {
  const nq = Math.max(1, Math.min(Q, Math.floor(hgt / 2)));
  const nk = Math.max(1, Math.min(K, Math.floor(hgt / 2)));
  const bins = new Float32Array(nq * nk);
  const qPerBin = Q / nq;
  for (let i = 0; i < Q; i++) {
    const a = Math.min(nq - 1, Math.floor(i / qPerBin));
    const base = (h * Q + i) * K;
    const min = kthLargest(weights, base, K, topK);
    const row = a * nk;
    for (let j = 0; j < K; j++) {
      const v = weights[base + j] as number;
      if (v < min || v === 0) continue;
      bins[row + Math.min(nk - 1, Math.floor((j * nk) / K))] += v;
    }
  }
  const inset = Math.min(6, w * 0.08);
  const x0 = inset;
  const x1 = w - inset;
  const dy = hgt / nq;
  const dk = hgt / nk;
  const paths: (Path2D | null)[] = new Array(BUCKETS).fill(null);
  for (let a = 0; a < nq; a++) {
    // Mean over the bin's query rows (a bin holds qPerBin rows on average).
    const norm = 1 / Math.max(1, Math.round((a + 1) * qPerBin) - Math.round(a * qPerBin));
    for (let b = 0; b < nk; b++) {
      const alpha = (bins[a * nk + b] as number) * norm;
      if (alpha < 1 / 255) continue;
      const k = bucketOf(alpha);
      const p = (paths[k] ??= new Path2D());
      p.moveTo(x0, (a + 0.5) * dy);
      p.lineTo(x1, (b + 0.5) * dk);
    }
  }
  ctx.strokeStyle = color;
  ctx.lineWidth = 1;
  paths.forEach((p, k) => {
    if (!p) return;
    ctx.globalAlpha = BUCKET_ALPHA[k] as number;
    ctx.stroke(p);
  });
  ctx.globalAlpha = 1;
}
