// Drawing one head's joint embedding on the single-head canvas: the world → canvas transform (equal x/y scale:
// distances are the message), the points (bucketed by colour, so a few thousand points are a few fill styles),
// search matches, and the lines from a clicked query to the keys it attends to most.

import { interleave, K_COLOR, Q_COLOR, type ColorBy, type Points } from "./points";
import { tokenColor } from "../../shell/theme";

export const SINGLE = 620; // single-head canvas, CSS px

export interface Transform {
  x0: number;
  y0: number;
  k: number;
}

/** A line from the clicked query to key point `key`, with its attention weight. */
export interface KeyLine {
  key: number;
  w: number;
}

/** World → canvas transform with equal x/y scale (distances are the message) and a 4% margin. */
export function fit(layouts: Float32Array[]): Transform {
  let x0 = Infinity,
    y0 = Infinity,
    x1 = -Infinity,
    y1 = -Infinity;
  for (const xy of layouts) {
    for (let i = 0; i < xy.length; i += 2) {
      const x = xy[i] as number,
        y = xy[i + 1] as number;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
  }
  const span = Math.max(x1 - x0, y1 - y0, 1e-9);
  const k = (SINGLE * 0.92) / span;
  return { x0: (x0 + x1) / 2 - SINGLE / 2 / k, y0: (y0 + y1) / 2 - SINGLE / 2 / k, k };
}

export function toScreen(v: Transform, xy: Float32Array, i: number): [number, number] {
  return [((xy[2 * i] as number) - v.x0) * v.k, SINGLE - ((xy[2 * i + 1] as number) - v.y0) * v.k];
}

export interface Scatter {
  /** Positions now on screen (world coords; mid-animation between two layouts). */
  xy: Float32Array;
  points: Points;
  view: Transform;
  colorBy: ColorBy;
  colorOf: (i: number) => string;
  /** Search matches (others dimmed), or null when not searching. */
  matches: Set<number> | null;
  /** The clicked query and its lines, or -1. */
  query: number;
  lines: KeyLine[];
}

export function drawScatter(ctx: CanvasRenderingContext2D, s: Scatter): void {
  const { xy, points: p } = s;
  const n = xy.length / 2;
  const buckets = new Map<string, number[]>();
  for (let o = 0; o < n; o++) {
    const i = interleave(o, p.numQueries, n);
    if (!Number.isFinite(xy[2 * i] as number)) continue; // a point the server did not sample (api.ts fetchHead)
    const c = s.colorOf(i);
    let b = buckets.get(c);
    if (!b) buckets.set(c, (b = []));
    b.push(i);
  }
  const dim = s.matches !== null;
  ctx.globalAlpha = dim ? 0.18 : 0.8;
  for (const [color, idx] of buckets) {
    ctx.fillStyle = color;
    ctx.strokeStyle = color;
    ctx.lineWidth = 1;
    for (const i of idx) {
      const [x, y] = toScreen(s.view, xy, i);
      if (i < p.numQueries || s.colorBy === "kind") ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
      else ctx.strokeRect(x - 1.5, y - 1.5, 3, 3); // keys hollow when colour does not say q/k
    }
  }
  ctx.globalAlpha = 1;
  if (s.matches) {
    ctx.strokeStyle = tokenColor("--tba-fg"); // outlines and lines in the text colour: visible in both themes
    for (const i of s.matches) {
      const [x, y] = toScreen(s.view, xy, i);
      ctx.fillStyle = s.colorOf(i);
      ctx.fillRect(x - 3, y - 3, 6, 6);
      ctx.strokeRect(x - 3, y - 3, 6, 6);
    }
  }
  if (s.query >= 0 && s.lines.length) {
    const [qx, qy] = toScreen(s.view, xy, s.query);
    const wmax = Math.max(...s.lines.map((l) => l.w));
    for (const { key, w } of s.lines) {
      const [kx, ky] = toScreen(s.view, xy, key);
      ctx.strokeStyle = tokenColor("--tba-fg");
      ctx.globalAlpha = 0.25 + 0.75 * (w / wmax);
      ctx.lineWidth = 0.5 + 4 * (w / wmax);
      ctx.beginPath();
      ctx.moveTo(qx, qy);
      ctx.lineTo(kx, ky);
      ctx.stroke();
      ctx.globalAlpha = 1;
      ctx.fillStyle = K_COLOR;
      ctx.fillRect(kx - 3, ky - 3, 6, 6);
    }
    ctx.fillStyle = Q_COLOR;
    ctx.strokeStyle = tokenColor("--tba-fg");
    ctx.lineWidth = 1.5;
    ctx.fillRect(qx - 4, qy - 4, 8, 8);
    ctx.strokeRect(qx - 4, qy - 4, 8, 8);
  }
}

/** The point within 8 px of canvas position (mx, my), or -1; the first `nq` points are queries. */
export function nearestPoint(xy: Float32Array, view: Transform, mx: number, my: number, nq: number): number {
  let best = -1,
    bestD = 64; // within 8 px
  for (let i = 0; i < xy.length / 2; i++) {
    const [x, y] = toScreen(view, xy, i);
    // A key must be 3 px closer than a query to win: the faithful layout puts queries on their top keys.
    const d = (x - mx) ** 2 + (y - my) ** 2 + (i >= nq ? 9 : 0);
    if (d < bestD) {
      bestD = d;
      best = i;
    }
  }
  return best;
}
