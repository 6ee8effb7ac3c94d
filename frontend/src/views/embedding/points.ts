// The points of a probe batch's joint embedding: every query of every probe input, then every key, with the
// probe, position and token each came from (one layout per head draws these same points), and their colours.

import type { BatchInfo } from "./api";

export const Q_COLOR = "rgb(95,185,108)";
export const K_COLOR = "rgb(227,55,143)";
export const Q_RGB: [number, number, number] = [95, 185, 108];
export const K_RGB: [number, number, number] = [227, 55, 143];

export type ColorBy = "kind" | "position" | "token" | "norm" | "probe";

export interface Points {
  /** Per point (queries first, then keys): probe index, position in its sequence, token, sequence length. */
  probe: Int32Array;
  pos: Int32Array;
  token: string[];
  len: Int32Array;
  numQueries: number;
  /** Index of the first key of each probe. */
  keyStart: number[];
}

/** The probe batch a probe belongs to: `sents/3` → `sents`; a probe without a numeric suffix is its own batch. */
export function batchOf(tag: string): string {
  const m = /^(.*)\/\d+$/.exec(tag);
  return m && m[1] ? m[1] : tag;
}

function hashHue(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h % 360;
}

/** Draw order: queries and keys alternate, so neither colour hides the other where they overlap. */
export function interleave(n: number, nq: number, total: number): number {
  const nk = total - nq;
  const both = 2 * Math.min(nq, nk);
  if (n < both) return n % 2 === 0 ? n / 2 : nq + (n - 1) / 2;
  return nq > nk ? n - both + nk : nq + (n - both) + nq;
}

export function buildPoints(info: BatchInfo): Points {
  const qTok: string[] = [],
    kTok: string[] = [];
  const qProbe: number[] = [],
    kProbe: number[] = [],
    qPos: number[] = [],
    kPos: number[] = [];
  const qLen: number[] = [],
    kLen: number[] = [];
  const keyStartRel: number[] = [];
  info.tokens.forEach((toks, p) => {
    toks.forEach((t, j) => {
      qTok.push(t);
      qProbe.push(p);
      qPos.push(j);
      qLen.push(toks.length);
    });
    const keys = info.key_tokens[p] ?? toks;
    keyStartRel.push(kTok.length);
    keys.forEach((t, j) => {
      kTok.push(t);
      kProbe.push(p);
      kPos.push(j);
      kLen.push(keys.length);
    });
  });
  const nq = qTok.length;
  return {
    probe: Int32Array.from([...qProbe, ...kProbe]),
    pos: Int32Array.from([...qPos, ...kPos]),
    token: [...qTok, ...kTok],
    len: Int32Array.from([...qLen, ...kLen]),
    numQueries: nq,
    keyStart: keyStartRel.map((s) => s + nq),
  };
}

/** Colour of point i in the single-head view; `norm` (|q| or |k| per point) comes with the head's layout. */
export function pointColor(p: Points, colorBy: ColorBy, norm: Float32Array | undefined, i: number): string {
  const isQ = i < p.numQueries;
  switch (colorBy) {
    case "kind":
      return isQ ? Q_COLOR : K_COLOR;
    case "position": {
      const len = p.len[i] as number;
      const t = len > 1 ? (p.pos[i] as number) / (len - 1) : 0;
      const b = Math.round(t * 7) / 7;
      return isQ ? `hsl(130,50%,${Math.round(80 - b * 55)}%)` : `hsl(325,65%,${Math.round(82 - b * 55)}%)`;
    }
    case "token":
      return `hsl(${Math.round(hashHue(p.token[i] ?? "") / 15) * 15},65%,45%)`;
    case "norm": {
      if (!norm) return "#888";
      let lo = Infinity,
        hi = -Infinity;
      const from = isQ ? 0 : p.numQueries,
        to = isQ ? p.numQueries : norm.length;
      for (let j = from; j < to; j++) {
        const v = norm[j] as number;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const t = hi > lo ? ((norm[i] as number) - lo) / (hi - lo) : 0.5;
      return `hsl(${Math.round(260 - (Math.round(t * 9) / 9) * 210)},70%,45%)`;
    }
    case "probe":
      return `hsl(${Math.round(((p.probe[i] as number) * 137.508) % 360)},60%,45%)`;
  }
}

/** Point i's colour as RGB bytes (the matrix mode paints pixels): pointColor's hsl() converted. */
export function pointRgb(p: Points, colorBy: ColorBy, i: number): [number, number, number] {
  const c = pointColor(p, colorBy, undefined, i);
  const m = /^hsl\((\d+),\s*(\d+)%,\s*(\d+)%\)$/.exec(c);
  if (!m) return i < p.numQueries ? Q_RGB : K_RGB;
  const h = Number(m[1]) / 360;
  const s = Number(m[2]) / 100;
  const l = Number(m[3]) / 100;
  const q = l < 0.5 ? l * (1 + s) : l + s - l * s;
  const a = 2 * l - q;
  const ch = (t: number): number => {
    t = (t + 1) % 1;
    const v = t < 1 / 6 ? a + (q - a) * 6 * t : t < 1 / 2 ? q : t < 2 / 3 ? a + (q - a) * (2 / 3 - t) * 6 : a;
    return Math.round(v * 255);
  };
  return [ch(h + 1 / 3), ch(h), ch(h - 1 / 3)];
}
