// Which lines the head view draws, and how. BertViz draws H·Q·K SVG <line>s and stalls beyond ~128 tokens. Here
// lines whose opacity would round to zero are skipped and the rest are grouped into a few opacity buckets per
// head, each stroked as one Path2D, so a 12 × 512 × 512 layer is one pass over the weights plus ≤ 16 strokes
// per head. The same selection feeds the SVG export's vector shapes, so the exported picture is the drawn one.

import type { Attention } from "../../data/api";
import type { VectorShape } from "../../export/vector";
import { kthLargest } from "../topk";

export const LINE_GAP = 300; // width of the band the lines cross, px (unless the scene says otherwise)
export const LINE_INSET = 4; // lines stop short of the token columns
export const MIN_ALPHA = 1 / 255; // below this a line cannot change a pixel
// Opacity buckets: two per octave from 1/255 to 1, so a line is drawn within ±19 % of its exact opacity.
export const BUCKETS = 16;
export const BUCKET_ALPHA = Float32Array.from({ length: BUCKETS }, (_, b) => Math.min(1, 2 ** ((b + 0.5) / 2) / 255));

export function bucketOf(alpha: number): number {
  return Math.min(BUCKETS - 1, Math.max(0, Math.floor(Math.log2(alpha * 255) * 2)));
}

export type Side = "left" | "right";

export interface Hover {
  side: Side;
  index: number;
}

/** What the lines depend on, read from the view each time they are drawn. */
export interface LineScene {
  attn: Attention;
  /** The active heads, ascending. */
  heads: number[];
  /** Line opacity = weight ÷ active heads × gain (1 = BertViz). */
  gain: number;
  /** Lines per query in the full view: 0 = all, else only each query's k strongest keys. */
  topK: number;
  colorOf: (h: number) => string;
  /** Widths of the query and key columns and the row height, CSS px. */
  leftW: number;
  rightW: number;
  rowH: number;
  /** Width of the band the lines cross (default LINE_GAP): the head view tab fits it to the page. */
  gap?: number;
}

export interface LinePath {
  color: string;
  alpha: number;
  path: Path2D;
}

export function lineWidth(rowH: number): number {
  return rowH >= 16 ? 2 : 1;
}

/** Every line of the full (un-hovered) picture, bucketed: built once per data / head selection. */
export function buildLinePaths(s: LineScene): LinePath[] {
  const out: LinePath[] = [];
  const { Q, K, weights } = s.attn;
  const heads = s.heads;
  const nA = heads.length / s.gain; // opacity = weight ÷ active heads (BertViz) × gain
  const minW = MIN_ALPHA * nA; // w / nA < 1/255 is invisible
  const x0 = s.leftW + LINE_INSET;
  const x1 = s.leftW + (s.gap ?? LINE_GAP) - LINE_INSET;
  const rowH = s.rowH;
  const paths: (Path2D | null)[] = new Array(BUCKETS);
  for (const h of heads) {
    paths.fill(null);
    for (let i = 0; i < Q; i++) {
      const yi = (i + 0.5) * rowH;
      const base = (h * Q + i) * K;
      const rowMin = Math.max(minW, kthLargest(weights, base, K, s.topK));
      for (let j = 0; j < K; j++) {
        const w = weights[base + j];
        if (w < rowMin) continue;
        const b = bucketOf(w / nA);
        let p = paths[b];
        if (!p) p = paths[b] = new Path2D();
        p.moveTo(x0, yi);
        p.lineTo(x1, (j + 0.5) * rowH);
      }
    }
    paths.forEach((path, b) => path && out.push({ color: s.colorOf(h), alpha: BUCKET_ALPHA[b], path }));
  }
  return out;
}

function strokeBuckets(ctx: CanvasRenderingContext2D, paths: (Path2D | null)[], color: string): void {
  ctx.strokeStyle = color;
  for (let b = 0; b < BUCKETS; b++) {
    const p = paths[b];
    if (!p) continue;
    ctx.globalAlpha = BUCKET_ALPHA[b];
    ctx.stroke(p);
  }
}

/** Lines of the hovered token only, plus per-head weight boxes behind the tokens on the other side. */
export function drawHoverLines(ctx: CanvasRenderingContext2D, s: LineScene, hv: Hover): void {
  const { Q, K, weights } = s.attn;
  const heads = s.heads;
  const nA = heads.length;
  const rowH = s.rowH;
  const x0 = s.leftW + LINE_INSET;
  const x1 = s.leftW + (s.gap ?? LINE_GAP) - LINE_INSET;
  // Boxes go behind the *other* column: keys when a query is hovered, and vice versa (BertViz).
  const boxX = hv.side === "left" ? s.leftW + (s.gap ?? LINE_GAP) : 0;
  const boxW = (hv.side === "left" ? s.rightW : s.leftW) / Math.max(1, nA);
  const n = hv.side === "left" ? K : Q;
  const yh = (hv.index + 0.5) * rowH;
  // weight(h, other) for the hovered token: row i of head h, or column j.
  const at = (h: number, o: number): number =>
    hv.side === "left" ? weights[(h * Q + hv.index) * K + o] : weights[(h * Q + o) * K + hv.index];

  ctx.lineWidth = lineWidth(rowH);
  const paths: (Path2D | null)[] = new Array(BUCKETS);
  heads.forEach((h, slot) => {
    const color = s.colorOf(h);
    ctx.fillStyle = color;
    paths.fill(null);
    for (let o = 0; o < n; o++) {
      const w = at(h, o);
      if (w >= MIN_ALPHA) {
        ctx.globalAlpha = Math.min(1, w);
        ctx.fillRect(boxX + slot * boxW, o * rowH, boxW, rowH);
      }
      if (w >= (MIN_ALPHA * nA) / s.gain) {
        const b = bucketOf((w * s.gain) / nA);
        let p = paths[b];
        if (!p) p = paths[b] = new Path2D();
        const yo = (o + 0.5) * rowH;
        p.moveTo(x0, hv.side === "left" ? yh : yo);
        p.lineTo(x1, hv.side === "left" ? yo : yh);
      }
    }
    strokeBuckets(ctx, paths, color);
  });
  ctx.globalAlpha = 1;
}

/**
 * The picture (full, or the hovered token's lines and boxes) as vector shapes in canvas CSS px, with the canvas
 * window starting at view row `top` (rows outside the window included). null when it would be more than
 * `maxShapes` shapes, too many for a sensible SVG (the export then embeds the bitmap).
 */
export function vectorShapes(s: LineScene, hv: Hover | null, top: number, maxShapes: number): VectorShape[] | null {
  const { Q, K, weights } = s.attn;
  const heads = s.heads;
  const rowH = s.rowH;
  const x0 = s.leftW + LINE_INSET;
  const x1 = s.leftW + (s.gap ?? LINE_GAP) - LINE_INSET;
  const out: VectorShape[] = [];
  const width = lineWidth(rowH);
  if (!hv) {
    const nA = heads.length / s.gain;
    for (const h of heads) {
      const color = s.colorOf(h);
      for (let i = 0; i < Q; i++) {
        const base = (h * Q + i) * K;
        const rowMin = Math.max(MIN_ALPHA * nA, kthLargest(weights, base, K, s.topK));
        for (let j = 0; j < K; j++) {
          const w = weights[base + j] as number;
          if (w < rowMin) continue;
          if (out.length >= maxShapes) return null;
          const alpha = BUCKET_ALPHA[bucketOf(w / nA)] as number;
          out.push({ line: [x0, (i + 0.5) * rowH - top, x1, (j + 0.5) * rowH - top], color, alpha, width });
        }
      }
    }
    return out;
  }
  const nA = heads.length;
  const boxX = hv.side === "left" ? s.leftW + (s.gap ?? LINE_GAP) : 0;
  const boxW = (hv.side === "left" ? s.rightW : s.leftW) / Math.max(1, nA);
  const n = hv.side === "left" ? K : Q;
  const yh = (hv.index + 0.5) * rowH - top;
  heads.forEach((h, slot) => {
    const color = s.colorOf(h);
    for (let o = 0; o < n; o++) {
      const w = (
        hv.side === "left" ? weights[(h * Q + hv.index) * K + o] : weights[(h * Q + o) * K + hv.index]
      ) as number;
      if (w >= MIN_ALPHA)
        out.push({ rect: [boxX + slot * boxW, o * rowH - top, boxW, rowH], color, alpha: Math.min(1, w) });
      if (w >= (MIN_ALPHA * nA) / s.gain) {
        const yo = (o + 0.5) * rowH - top;
        const alpha = BUCKET_ALPHA[bucketOf((w * s.gain) / nA)] as number;
        out.push({ line: hv.side === "left" ? [x0, yh, x1, yo] : [x0, yo, x1, yh], color, alpha, width });
      }
    }
  });
  return out;
}
