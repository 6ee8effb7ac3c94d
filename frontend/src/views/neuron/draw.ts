// Painting the neuron view's canvas: vector strips (one cell per dimension, colour by sign, opacity by
// magnitude), the number columns of one query (scores, softmax, logged weights, the reference's, Δ on PuOr as
// in the other views), and the connector lines from the query to every key.

import { cssColor, diverging, textOn } from "../../draw/colormap";
import { canvasText } from "../../shell/theme";
import { CELL, type Layout } from "./layout";
import type { Row } from "./math";

// Sign of a vector component or score: RdBu's ends (colour-blind safe). Not BertViz's blue/orange: orange means
// "more attention now" in every Δ of this plugin (PuOr), and one colour has one meaning.
export const POS = [33, 102, 172]; // blue: positive
export const NEG = [178, 24, 43]; // red: negative

/**
 * Rows [r0, r1) of a rows × D strip at x0, colour by sign, opacity |v| / scale; one putImageData per strip.
 * `value(r, c)` gives a cell (q⊙k is computed only for the rows drawn). Only the rows drawn cost anything: the
 * canvas covers a window of rows at thousands of tokens (draw/headView/window.ts).
 */
export function strips(
  ctx: CanvasRenderingContext2D,
  lay: Layout,
  value: (r: number, c: number) => number,
  r0: number,
  r1: number,
  D: number,
  x0: number,
  scale: number,
  mask?: (r: number) => boolean,
): void {
  if (r1 <= r0) return;
  const t = ctx.getTransform(); // putImageData ignores the transform: place the image in device pixels
  const dpr = t.a;
  const w = Math.max(1, Math.round(lay.stripW * dpr));
  const rh = lay.rowH * dpr;
  const y0Dev = Math.round((lay.headerH + r0 * lay.rowH) * dpr + t.f);
  const hgt = Math.max(1, Math.round((r1 - r0) * rh));
  const img = ctx.createImageData(w, hgt);
  const px = img.data;
  const inv = scale > 0 ? 1 / scale : 0;
  for (let r = r0; r < r1; r++) {
    if (mask && mask(r)) continue;
    const y0 = Math.round((r - r0) * rh + 1);
    const y1 = Math.max(y0 + 1, Math.round((r - r0 + 1) * rh - 1));
    for (let c = 0; c < D; c++) {
      const val = value(r, c);
      const a = Math.min(1, Math.abs(val) * inv);
      const col = val >= 0 ? POS : NEG;
      const xa = Math.round((c * w) / D);
      const xb = Math.round(((c + 1) * w) / D);
      for (let y = y0; y < y1 && y < hgt; y++) {
        for (let xx = xa; xx < xb; xx++) {
          const p = (y * w + xx) * 4;
          px[p] = col[0] as number;
          px[p + 1] = col[1] as number;
          px[p + 2] = col[2] as number;
          px[p + 3] = Math.round(a * 255);
        }
      }
    }
  }
  ctx.putImageData(img, Math.round(x0 * dpr + t.e), y0Dev);
}

/**
 * The number columns of keys [r0, r1) of one query: now (`cur`) and, when comparing, the reference and Δ; the
 * shades scale to every key's. Masked keys are greyed, and the logged column when no weights were loaded.
 * Returns the largest |Δ softmax| (0 when not comparing).
 */
export function numberColumns(
  ctx: CanvasRenderingContext2D,
  lay: Layout,
  K: number,
  cur: Row,
  ref: Row | null,
  r0 = 0,
  r1 = K,
): number {
  const x = lay.x;
  const top = lay.headerH;
  const { score, soft, aRow, masked } = cur;
  const both = (j: number): boolean => !masked(j) && !(ref && ref.masked(j));
  // One |score| scale for now and ref, so their cells compare; Δ columns scale to their own max |Δ|.
  let sMax = 0;
  let dsMax = 0;
  let dpMax = 0;
  for (let j = 0; j < K; j++) {
    if (!masked(j)) sMax = Math.max(sMax, Math.abs(score[j] as number));
    if (ref && !ref.masked(j)) sMax = Math.max(sMax, Math.abs(ref.score[j] as number));
    if (ref && both(j)) {
      dsMax = Math.max(dsMax, Math.abs((score[j] as number) - (ref.score[j] as number)));
      dpMax = Math.max(dpMax, Math.abs((soft[j] as number) - (ref.soft[j] as number)));
    }
  }
  const rh = lay.rowH;
  const font = Math.max(9, Math.min(12, rh - 4));
  ctx.font = `${font}px system-ui, sans-serif`;
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  const grey = (x0: number, x1: number, y: number): void => {
    ctx.fillStyle = "rgba(128,128,128,0.12)";
    ctx.fillRect(x0, y + 1, x1 - x0, rh - 2);
  };
  const scoreCell = (x0: number, y: number, s: number): void =>
    cell(ctx, x0, y, rh, s >= 0 ? POS : NEG, sMax > 0 ? Math.abs(s) / sMax : 0, s.toFixed(2), font);
  for (let j = r0; j < Math.min(r1, K); j++) {
    const y = top + j * rh;
    if (masked(j)) grey(x.score, x.attn + CELL, y);
    else {
      scoreCell(x.score, y, score[j] as number);
      cell(ctx, x.soft, y, rh, POS, soft[j] as number, (soft[j] as number).toFixed(3), font);
      if (cur.logged) cell(ctx, x.attn, y, rh, POS, aRow[j] as number, (aRow[j] as number).toFixed(3), font);
      else grey(x.attn, x.attn + CELL, y);
    }
    if (!ref) continue;
    if (ref.masked(j)) grey(x.rScore, x.rSoft + CELL, y);
    else {
      scoreCell(x.rScore, y, ref.score[j] as number);
      cell(ctx, x.rSoft, y, rh, POS, ref.soft[j] as number, (ref.soft[j] as number).toFixed(3), font);
    }
    if (!both(j)) grey(x.dScore, x.dSoft + CELL, y);
    else {
      deltaCell(ctx, x.dScore, y, rh, (score[j] as number) - (ref.score[j] as number), dsMax, 2, font);
      deltaCell(ctx, x.dSoft, y, rh, (soft[j] as number) - (ref.soft[j] as number), dpMax, 3, font);
    }
  }
  return dpMax;
}

/**
 * Connector lines from query row i to each key in the head's colour (as in the head and model views), opacity =
 * logged attention (as BertViz, tanh(1.8·w)); only those crossing view px [y0, y1) (the canvas window) are stroked.
 */
export function connectors(
  ctx: CanvasRenderingContext2D,
  lay: Layout,
  i: number,
  aRow: Float32Array,
  color: string,
  y0 = -Infinity,
  y1 = Infinity,
): void {
  const x = lay.x;
  const top = lay.headerH;
  const rh = lay.rowH;
  const yq = top + (i + 0.5) * rh;
  ctx.lineWidth = rh >= 16 ? 2 : 1;
  ctx.strokeStyle = color;
  for (let j = 0; j < aRow.length; j++) {
    const a = Math.tanh(1.8 * (aRow[j] as number));
    if (a < 1 / 255) continue;
    const yk = top + (j + 0.5) * rh;
    if (Math.max(yq, yk) < y0 || Math.min(yq, yk) > y1) continue;
    ctx.globalAlpha = a;
    ctx.beginPath();
    ctx.moveTo(x.gap + 4, yq);
    ctx.lineTo(x.kTok - 4, top + (j + 0.5) * rh);
    ctx.stroke();
  }
  ctx.globalAlpha = 1;
}

function cell(
  ctx: CanvasRenderingContext2D,
  x: number,
  y: number,
  rh: number,
  rgb: number[],
  a: number,
  text: string,
  font: number,
): void {
  ctx.fillStyle = `rgba(${rgb.join(",")},${Math.min(1, Math.max(0, a)).toFixed(3)})`;
  ctx.fillRect(x, y + 1, CELL, rh - 2);
  if (rh < 11) return; // too small for digits; the tooltip has them
  ctx.fillStyle = a > 0.55 ? "#fff" : canvasText();
  ctx.font = `${font}px system-ui, sans-serif`;
  ctx.fillText(text, x + CELL - 3, y + rh / 2);
}

/** Signed Δ on PuOr (purple < 0 < orange), as the other views' Δ; opaque, so the text contrast is fixed. */
function deltaCell(
  ctx: CanvasRenderingContext2D,
  x: number,
  y: number,
  rh: number,
  v: number,
  vmax: number,
  digits: number,
  font: number,
): void {
  const t = vmax > 0 ? Math.max(-1, Math.min(1, v / vmax)) : 0;
  const map = diverging();
  ctx.fillStyle = cssColor(map, 127.5 + 127.5 * t);
  ctx.fillRect(x, y + 1, CELL, rh - 2);
  if (rh < 11) return;
  ctx.fillStyle = textOn(map, 127.5 + 127.5 * t);
  ctx.font = `${font}px system-ui, sans-serif`;
  ctx.fillText((v > 0 ? "+" : "") + v.toFixed(digits), x + CELL - 3, y + rh / 2);
}
