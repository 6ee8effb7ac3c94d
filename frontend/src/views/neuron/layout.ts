// Where the neuron view's columns go, left to right: query tokens, q, the connector band, key tokens, k, q⊙k,
// then the number columns (q·k·s, softmax, logged) and, when comparing, the reference's and the Δ columns;
// and the headings above them. All in CSS px from the view's left edge.

import type { CompareRef } from "../../shell/view";
import type { QK } from "../../data/api";
import { displayText, rowHeightFor } from "../../draw/tokens";

const GAP = 110; // band of connector lines from the query to every key
export const CELL = 58; // width of a number column

export interface Columns {
  qTok: number;
  qVec: number;
  gap: number;
  kTok: number;
  kVec: number;
  prod: number;
  score: number;
  soft: number;
  attn: number;
  rScore: number;
  rSoft: number;
  dScore: number;
  dSoft: number;
  end: number;
}

export interface Layout {
  rowH: number;
  /** Width of a token column. */
  tokW: number;
  /** Width of a vector strip (q, k, q⊙k): D cells. */
  stripW: number;
  /** Height of the headings band above the rows. */
  headerH: number;
  x: Columns;
}

export const INITIAL_LAYOUT: Layout = {
  rowH: 20,
  tokW: 90,
  stripW: 128,
  headerH: 34,
  x: {
    qTok: 0,
    qVec: 0,
    gap: 0,
    kTok: 0,
    kVec: 0,
    prod: 0,
    score: 0,
    soft: 0,
    attn: 0,
    rScore: 0,
    rSoft: 0,
    dScore: 0,
    dSoft: 0,
    end: 0,
  },
};

/** Places every column for these tokens and head size; measures the tokens with `ctx` (its font is left set). */
export function columnLayout(
  ctx: CanvasRenderingContext2D,
  left: string[],
  right: string[],
  D: number,
  comparing: boolean,
): Layout & { fontPx: number } {
  const n = Math.max(left.length, right.length);
  const rowH = rowHeightFor(n);
  const cellW = Math.max(1, Math.min(4, Math.floor(160 / D)));
  const stripW = cellW * D;
  const headerH = comparing ? 50 : 34; // room for the now / ref / Δ group captions
  const fontPx = rowH >= 18 ? 13 : rowH >= 15 ? 12 : 10;
  ctx.font = `${fontPx}px system-ui, sans-serif`;
  let w = 0;
  for (const t of [...left, ...right]) w = Math.max(w, ctx.measureText(displayText(t)).width);
  const tokW = Math.ceil(Math.min(180, Math.max(50, w))) + 14;
  const x = { ...INITIAL_LAYOUT.x };
  x.qVec = tokW + 4;
  x.gap = x.qVec + stripW;
  x.kTok = x.gap + GAP;
  x.kVec = x.kTok + tokW + 4;
  x.prod = x.kVec + stripW + 12;
  x.score = x.prod + stripW + 12;
  x.soft = x.score + CELL + 4;
  x.attn = x.soft + CELL + 4;
  x.end = x.attn + CELL;
  if (comparing) {
    x.rScore = x.end + 16;
    x.rSoft = x.rScore + CELL + 4;
    x.dScore = x.rSoft + CELL + 16;
    x.dSoft = x.dScore + CELL + 4;
    x.end = x.dSoft + CELL + 16; // + room for the "Δ softmax" heading
  }
  return { rowH, tokW, stripW, headerH, x, fontPx };
}

/**
 * The column headings (`data-col` hooks) for head `kh`'s key strip, and, when comparing with `ref`, the group
 * captions saying which step/run each block of columns belongs to.
 */
export function headings(lay: Layout, qk: QK, kh: number, ref: CompareRef | null, step: number): HTMLElement[] {
  const x = lay.x;
  const rl = ref ? ref.label : "";
  // [left, width, text, data-col, title]; ref/Δ columns only when comparing.
  const cols: [number, number, string, string, string][] = [
    [x.qTok, lay.tokW, "Query", "qtok", ""],
    [x.qVec, lay.stripW, "Query q", "q", ""],
    [x.kTok, lay.tokW, "Key", "ktok", ""],
    [x.kVec, lay.stripW, qk.Hkv < qk.H ? `Key k (head ${kh})` : "Key k", "k", ""],
    [x.prod, lay.stripW, "q ⊙ k", "prod", ""],
    [x.score, CELL, "q·k · s", "score", ""],
    [
      x.soft,
      CELL,
      "softmax",
      "soft",
      "softmax of the scaled scores, recomputed here from the logged q/k with the layer's logged scaling, softcap, " +
        "mask and sinks (unknown ones are named above the columns); small differences to 'logged' are storage " +
        "rounding (8-bit weights, fp16 q/k), larger ones a bias or mask the q/k do not carry",
    ],
    [x.attn, CELL, "logged", "attn", "the attention weight the model used, as stored (8-bit: ≤ 0.62 % of the row max)"],
  ];
  if (ref) {
    cols.push(
      [x.rScore, CELL, "q·k · s", "rscore", `q·k · s of ${rl}`],
      [x.rSoft, CELL, "softmax", "rsoft", `softmax of ${rl}`],
      [x.dScore, CELL, "Δ q·k·s", "dscore", `q·k · s now − ${rl}`],
      [x.dSoft, CELL + 16, "Δ softmax", "dsoft", `softmax now − ${rl}`],
    );
  }
  const heading = (cls: string, left: number, width: number, text: string, title: string): HTMLElement => {
    const el = document.createElement("div");
    el.className = cls;
    el.style.left = `${left}px`;
    el.style.width = `${width}px`;
    el.textContent = text; // run/tag names are user data: text only
    if (title) el.title = title;
    return el;
  };
  const els = cols.map(([left, width, text, col, title]) => {
    const el = heading("nv-heading", left, width, text, title);
    el.dataset["col"] = col;
    return el;
  });
  if (ref) {
    const now = `now: step ${step}`;
    for (const [left, right, text] of [
      [x.score, x.attn + CELL, now],
      [x.rScore, x.rSoft + CELL, `ref: ${rl}`],
      [x.dScore, x.end, "Δ = now − ref"],
    ] as [number, number, string][]) {
      const el = heading("nv-info nv-group", left, right - left, text, text);
      el.style.cssText +=
        "position: absolute; top: 28px; white-space: nowrap; overflow: hidden; " +
        "text-overflow: ellipsis; border-top: 1px solid currentColor;";
      els.push(el);
    }
  }
  return els;
}
