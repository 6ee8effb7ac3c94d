// Neuron view (BertViz's expanded neuron view) for any captured model: for one layer, head and query token,
// the query vector, every key vector, q⊙k, the scaled score q·k·s, softmax of those scores, and the attention
// the model logged. Needs the logged q/k (route `qk`). Hover a query token to preview, click to lock, Esc
// unlocks; ←/→ change head. The softmax is recomputed in the browser over the keys the model did not mask
// (inferred: logged weight 0), so a difference to the logged column reveals biases the q/k do not carry.
// With the toolbar's "Compare with" set, the reference's q·k·s and softmax for the same layer/head/query and
// Δ = current − reference are added as columns (Δ on the PuOr diverging map of the other views).

import { HttpError, type Attention, type Manifest, type QK } from "../api";
import { PUOR, cssColor } from "../colormap";
import { compareTarget, deltaSummary } from "../compare";
import { displayText, rowHeightFor } from "../headView";
import { HoverLock } from "../hoverLock";
import { canvasText } from "../theme";
import type { CompareRef, SharedState, View, ViewHost } from "../view";
import { checkShape } from "./head";

const GAP = 110; // band of connector lines from the query to every key
const CELL = 58; // width of a number column
const POS = [33, 102, 172]; // blue: positive
const NEG = [230, 97, 1]; // orange: negative (blue/orange is colour-blind safe, as BertViz)

interface Ref {
  ref: CompareRef;
  qk: QK;
  attn: Attention;
  scaling: number;
}

interface Data {
  m: Manifest;
  qk: QK;
  attn: Attention;
  scaling: number;
  scalingKnown: boolean;
  /** The "Compare with" reference at the same layer, when it has q/k of the same shape. */
  ref: Ref | null;
}

interface Row {
  score: Float64Array;
  soft: Float64Array;
  aRow: Float32Array;
  masked: (j: number) => boolean;
}

/** Scaling for `layer`: the manifest's `scaling` (number or per-layer list) when present, else 1/√d. */
export function scalingOf(m: Manifest, layer: number, d: number): { value: number; known: boolean } {
  const s = m.scaling;
  const v = Array.isArray(s) ? s[layer] : s;
  return typeof v === "number" && Number.isFinite(v) ? { value: v, known: true } : { value: 1 / Math.sqrt(d), known: false };
}

/** Query head h reads key head h // (H / H_kv) (grouped-query attention). */
export function kvHeadOf(h: number, H: number, Hkv: number): number {
  return Math.floor(h / Math.max(1, H / Math.max(1, Hkv)));
}

export class NeuronView implements View {
  readonly id = "neuron";
  readonly label = "Neuron view";
  readonly root = document.createElement("div");
  private readonly headSelect = document.createElement("select");
  private readonly info = document.createElement("div");
  private readonly body = document.createElement("div");
  private readonly canvas = document.createElement("canvas");
  private readonly header = document.createElement("div");
  private readonly qCol = document.createElement("div");
  private readonly kCol = document.createElement("div");
  private readonly note = document.createElement("div");
  private readonly cmp = document.createElement("div"); // which reference Δ is against, or why there is none
  private head = 0;
  private step = 0;
  private data: Data | null = null;
  private tokensKey = "";
  private readonly query = new HoverLock<number>(() => this.drawQuery());
  // Layout (CSS px).
  private rowH = 20;
  private tokW = 90;
  private stripW = 128;
  private cellW = 2;
  private x = { qTok: 0, qVec: 0, gap: 0, kTok: 0, kVec: 0, prod: 0, score: 0, soft: 0, attn: 0, rScore: 0, rSoft: 0, dScore: 0, dSoft: 0, end: 0 };
  private headerH = 34;

  constructor() {
    this.root.className = "neuron-view";
    const bar = document.createElement("div");
    bar.className = "tba-viewbar";
    this.headSelect.id = "neuron-head";
    this.headSelect.addEventListener("change", () => {
      this.head = Number(this.headSelect.value);
      this.paint();
    });
    const lab = document.createElement("label");
    lab.className = "control";
    const span = document.createElement("span");
    span.textContent = "Head";
    lab.append(span, this.headSelect);
    this.info.className = "nv-info";
    bar.append(lab, this.info);
    this.note.className = "tba-message";
    this.cmp.className = "nv-info nv-compare";
    this.cmp.style.marginBottom = "6px";
    this.body.className = "nv-body";
    this.header.className = "nv-header";
    this.qCol.className = "token-col nv-q";
    this.kCol.className = "token-col nv-k";
    this.body.append(this.canvas, this.header, this.qCol, this.kCol);
    this.root.append(bar, this.cmp, this.note, this.body);
    this.qCol.addEventListener("mouseover", (e) => this.query.hover(indexOf(e)));
    this.qCol.addEventListener("mouseleave", () => this.query.hover(null));
    this.qCol.addEventListener("click", (e) => {
      const i = indexOf(e);
      if (i !== null) this.query.click(i);
    });
    this.kCol.addEventListener("mouseover", (e) => {
      const j = indexOf(e);
      if (j !== null) this.keyTitle(e.target as HTMLElement, j);
    });
  }

  async show(host: ViewHost): Promise<void> {
    const state = host.state;
    const m = state.manifest;
    if (!m.has_qk) {
      this.message("Queries and keys were not logged for this probe, so there is no neuron view.\n" +
        "Log them with add_attention(..., queries=q, keys=k) (or the capture API) to see q, k, q⊙k and q·k.");
      return;
    }
    let qk: QK;
    let attn: Attention;
    const refP = this.loadRef(host, state); // never rejects; loads alongside the current step
    try {
      [qk, attn] = await Promise.all([host.qk(state.step, state.layer), host.attention(state.step, state.layer)]);
    } catch (e) {
      if (e instanceof HttpError && e.status === 404 && host.isCurrent(state)) {
        this.message("Queries and keys were not logged for this step.");
        return;
      }
      throw e;
    }
    if (!host.isCurrent(state)) return;
    checkShape(attn, m.tokens.length, (m.key_tokens ?? m.tokens).length);
    if (qk.Q !== attn.Q || qk.K !== attn.K || qk.H !== attn.H) {
      throw new Error(`q/k are ${qk.H}×${qk.Q}/${qk.K} but attention is ${attn.H}×${attn.Q}×${attn.K}`);
    }
    let ref = await refP;
    if (!host.isCurrent(state)) return;
    if (ref && typeof ref !== "string") {
      const a = [qk.H, qk.Hkv, qk.Q, qk.K, qk.D];
      const b = [ref.qk.H, ref.qk.Hkv, ref.qk.Q, ref.qk.K, ref.qk.D];
      if (a.join() !== b.join() || ref.attn.Q !== attn.Q || ref.attn.K !== attn.K) {
        ref = `cannot compare with ${ref.ref.label}: q/k shapes differ ([H, H_kv, Q, K, D] ${a.join("×")} vs ${b.join("×")})`;
      }
    }
    const s = scalingOf(m, state.layer, qk.D);
    this.step = state.step;
    this.data = { m, qk, attn, scaling: s.value, scalingKnown: s.known, ref: ref && typeof ref !== "string" ? ref : null };
    const r = this.data.ref;
    this.cmp.textContent = r
      ? `Reference: ${r.ref.label} (columns "ref") · Δ = step ${state.step} − ${r.ref.label}: orange = higher now, purple = lower`
      : typeof ref === "string" ? `Compare: ${ref}` : "";
    this.root.dataset["compare"] = r ? r.ref.label : "";
    this.note.textContent = "";
    this.body.style.display = "";
    if (this.headSelect.options.length !== qk.H) {
      this.headSelect.replaceChildren(
        ...Array.from({ length: qk.H }, (_, h) => {
          const o = document.createElement("option");
          o.value = String(h);
          o.textContent = String(h);
          return o;
        }),
      );
    }
    this.head = Math.min(this.head, qk.H - 1);
    this.headSelect.value = String(this.head);
    this.layout();
    this.paint();
    host.setSummary(
      (r ? deltaSummary(state, r.ref) + " · " : typeof ref === "string" ? `(${ref}) · ` : "") +
      `layer ${state.layer} · ${qk.H} query heads, ${qk.Hkv} key heads · d_head ${qk.D} · ${qk.Q} tokens · ` +
        "hover a query token to see its computation, click to lock it (Esc unlocks), ←/→ change head",
    );
  }

  /** The reference's q/k and attention, a reason why there is none (string), or null when comparison is off. */
  private async loadRef(host: ViewHost, state: SharedState): Promise<Ref | string | null> {
    try {
      const t = await compareTarget(host, state);
      if (t === null || typeof t === "string") return t;
      if (!t.m.has_qk) return `queries and keys were not logged for ${t.ref.label}`;
      const [qk, attn] = await Promise.all([
        host.qk(t.ref.step, state.layer, t.ref.probe),
        host.attention(t.ref.step, state.layer, t.ref.probe),
      ]);
      return { ref: t.ref, qk, attn, scaling: scalingOf(t.m, state.layer, qk.D).value };
    } catch (e) {
      const ref = state.compare?.label ?? "the reference";
      if (e instanceof HttpError && e.status === 404) return `queries and keys were not logged for ${ref}`;
      return `${ref}: ${e instanceof Error ? e.message : String(e)}`;
    }
  }

  private message(text: string): void {
    this.data = null;
    this.cmp.textContent = "";
    this.root.dataset["compare"] = "";
    this.note.textContent = text;
    this.body.style.display = "none";
  }

  private layout(): void {
    const d = this.data as Data;
    const left = d.m.tokens;
    const right = d.m.key_tokens ?? d.m.tokens;
    const n = Math.max(left.length, right.length);
    this.rowH = rowHeightFor(n);
    this.cellW = Math.max(1, Math.min(4, Math.floor(160 / d.qk.D)));
    this.stripW = this.cellW * d.qk.D;
    this.headerH = d.ref ? 50 : 34; // room for the now / ref / Δ group captions
    const key = JSON.stringify([left, right, this.rowH, this.headerH]);
    const ctx = this.canvas.getContext("2d") as CanvasRenderingContext2D;
    const fontPx = this.rowH >= 18 ? 13 : this.rowH >= 15 ? 12 : 10;
    ctx.font = `${fontPx}px system-ui, sans-serif`;
    let w = 0;
    for (const t of [...left, ...right]) w = Math.max(w, ctx.measureText(displayText(t)).width);
    this.tokW = Math.ceil(Math.min(180, Math.max(50, w))) + 14;
    const x = { qTok: 0, qVec: 0, gap: 0, kTok: 0, kVec: 0, prod: 0, score: 0, soft: 0, attn: 0, rScore: 0, rSoft: 0, dScore: 0, dSoft: 0, end: 0 };
    x.qVec = this.tokW + 4;
    x.gap = x.qVec + this.stripW;
    x.kTok = x.gap + GAP;
    x.kVec = x.kTok + this.tokW + 4;
    x.prod = x.kVec + this.stripW + 12;
    x.score = x.prod + this.stripW + 12;
    x.soft = x.score + CELL + 4;
    x.attn = x.soft + CELL + 4;
    x.end = x.attn + CELL;
    if (d.ref) {
      x.rScore = x.end + 16;
      x.rSoft = x.rScore + CELL + 4;
      x.dScore = x.rSoft + CELL + 16;
      x.dSoft = x.dScore + CELL + 4;
      x.end = x.dSoft + CELL + 16; // + room for the "Δ softmax" heading
    }
    this.x = x;
    const height = this.headerH + n * this.rowH;
    this.body.style.width = `${x.end}px`;
    this.body.style.height = `${height}px`;
    this.body.style.setProperty("--row-h", `${this.rowH}px`);
    this.body.style.setProperty("--font-px", `${fontPx}px`);
    const dpr = Math.max(1, Math.min(window.devicePixelRatio || 1, 32767 / height));
    this.canvas.width = Math.round(x.end * dpr);
    this.canvas.height = Math.round(height * dpr);
    this.canvas.style.width = `${x.end}px`;
    this.canvas.style.height = `${height}px`;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    if (key !== this.tokensKey) {
      this.tokensKey = key;
      this.fill(this.qCol, left, x.qTok, "query");
      this.fill(this.kCol, right, x.kTok, "key");
      if (this.query.current !== null && this.query.current >= left.length) this.query.reset();
    }
  }

  private fill(col: HTMLElement, tokens: string[], x: number, what: string): void {
    col.style.left = `${x}px`;
    col.style.top = `${this.headerH}px`;
    col.style.width = `${this.tokW}px`;
    const frag = document.createDocumentFragment();
    tokens.forEach((t, i) => {
      const el = document.createElement("div");
      el.className = `token ${what === "query" ? "left" : "right"}`;
      el.dataset["index"] = String(i);
      el.style.top = `${i * this.rowH}px`;
      el.textContent = displayText(t); // untrusted: text only
      el.title = `${what} ${i}: ${t}`;
      frag.appendChild(el);
    });
    col.replaceChildren(frag);
  }

  /** Headings (DOM text) and the static strips (every query and key vector of the head). */
  private paint(): void {
    const d = this.data;
    if (!d) return;
    const { qk } = d;
    const h = this.head;
    const kh = kvHeadOf(h, qk.H, qk.Hkv);
    const group = qk.H / Math.max(1, qk.Hkv);
    const shared = qk.Hkv < qk.H ? ` · GQA: key head ${kh} is shared by query heads ${kh * group}–${(kh + 1) * group - 1}` : "";
    const rope = "q/k as the model used them (post-RoPE where the model applies RoPE; pre-RoPE is not logged)";
    const sc = d.scalingKnown
      ? `scaling ${d.scaling.toPrecision(4)} (from the manifest)`
      : `scaling 1/√${qk.D} = ${d.scaling.toPrecision(4)} (assumed: the manifest carries no scaling)`;
    this.info.textContent = `${rope} · ${sc}${shared}`;
    const x = this.x;
    const r = d.ref;
    const rl = r ? r.ref.label : "";
    // [left, width, text, data-col, title]; ref/Δ columns only when comparing.
    const cols: [number, number, string, string, string][] = [
      [x.qTok, this.tokW, "Query", "qtok", ""],
      [x.qVec, this.stripW, "Query q", "q", ""],
      [x.kTok, this.tokW, "Key", "ktok", ""],
      [x.kVec, this.stripW, qk.Hkv < qk.H ? `Key k (head ${kh})` : "Key k", "k", ""],
      [x.prod, this.stripW, "q ⊙ k", "prod", ""],
      [x.score, CELL, "q·k · s", "score", ""],
      [x.soft, CELL, "softmax", "soft", "softmax of the scaled scores over the keys the model did not mask " +
        "(logged weight > 0); differences to 'logged' come from biases or masks q/k do not carry"],
      [x.attn, CELL, "logged", "attn", "the attention weight the model used"],
    ];
    if (r) {
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
    if (r) {
      // Group captions under the headings say which step/run each block of columns belongs to.
      const now = `now: step ${this.step}`;
      for (const [left, right, text] of [
        [x.score, x.attn + CELL, now],
        [x.rScore, x.rSoft + CELL, `ref: ${rl}`],
        [x.dScore, x.end, "Δ = now − ref"],
      ] as [number, number, string][]) {
        const el = heading("nv-info nv-group", left, right - left, text, text);
        el.style.cssText += "position: absolute; top: 28px; white-space: nowrap; overflow: hidden; " +
          "text-overflow: ellipsis; border-top: 1px solid currentColor;";
        els.push(el);
      }
    }
    this.header.replaceChildren(...els);
    const ctx = this.canvas.getContext("2d") as CanvasRenderingContext2D;
    ctx.clearRect(0, 0, x.end, this.headerH + Math.max(qk.Q, qk.K) * this.rowH);
    // Column scales are per head, so rows are comparable within a column.
    const qOff = h * qk.Q * qk.D;
    const kOff = kh * qk.K * qk.D;
    this.strips(ctx, qk.queries, qOff, qk.Q, qk.D, x.qVec, maxAbs(qk.queries, qOff, qk.Q * qk.D));
    this.strips(ctx, qk.keys, kOff, qk.K, qk.D, x.kVec, maxAbs(qk.keys, kOff, qk.K * qk.D));
    this.root.dataset["head"] = String(h);
    this.drawQuery();
  }

  /** rows × D cells at (x0, header), colour by sign, opacity |v| / scale; one putImageData per strip. */
  private strips(
    ctx: CanvasRenderingContext2D,
    v: Float32Array,
    off: number,
    rows: number,
    D: number,
    x0: number,
    scale: number,
    mask?: (r: number) => boolean,
  ): void {
    const dpr = ctx.getTransform().a;
    const w = Math.max(1, Math.round(this.stripW * dpr));
    const rh = this.rowH * dpr;
    const hgt = Math.max(1, Math.round(rows * rh));
    const img = ctx.createImageData(w, hgt);
    const px = img.data;
    const inv = scale > 0 ? 1 / scale : 0;
    for (let r = 0; r < rows; r++) {
      if (mask && mask(r)) continue;
      const y0 = Math.round(r * rh + 1);
      const y1 = Math.max(y0 + 1, Math.round((r + 1) * rh - 1));
      for (let c = 0; c < D; c++) {
        const val = v[off + r * D + c] as number;
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
    ctx.putImageData(img, Math.round(x0 * dpr), Math.round(this.headerH * dpr));
  }

  /** Everything that depends on the query token: q⊙k, scores, softmax, logged weights, connector lines. */
  private drawQuery(): void {
    const d = this.data;
    if (!d) return;
    const { qk, attn } = d;
    const x = this.x;
    const h = this.head;
    const i = Math.min(this.query.current ?? 0, qk.Q - 1);
    const D = qk.D;
    const K = qk.K;
    const ctx = this.canvas.getContext("2d") as CanvasRenderingContext2D;
    const top = this.headerH;
    const height = Math.max(qk.Q, K) * this.rowH;
    ctx.clearRect(x.gap, top, x.kTok - x.gap, height);
    ctx.clearRect(x.prod - 2, top, x.end - x.prod + 2, height);
    ctx.clearRect(0, top, x.qVec, height); // query highlight lives behind the query tokens
    const prod = new Float32Array(K * D);
    const cur = rowOf(qk, attn, h, i, d.scaling, prod);
    const { score, soft, aRow, masked } = cur;
    // The reference row: same head and query, its own q/k, scaling and mask.
    const ref = d.ref ? rowOf(d.ref.qk, d.ref.attn, h, i, d.ref.scaling) : null;
    const both = (j: number): boolean => !masked(j) && !(ref && ref.masked(j));
    this.strips(ctx, prod, 0, K, D, x.prod, maxAbs(prod, 0, K * D), masked);
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
    const rh = this.rowH;
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
    for (let j = 0; j < K; j++) {
      const y = top + j * rh;
      if (masked(j)) grey(x.score, x.attn + CELL, y);
      else {
        scoreCell(x.score, y, score[j] as number);
        cell(ctx, x.soft, y, rh, POS, soft[j] as number, (soft[j] as number).toFixed(3), font);
        cell(ctx, x.attn, y, rh, POS, aRow[j] as number, (aRow[j] as number).toFixed(3), font);
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
    // Connector lines from the query row to each key, opacity = logged attention (as BertViz, tanh(1.8·w)).
    const yq = top + (i + 0.5) * rh;
    ctx.lineWidth = rh >= 16 ? 2 : 1;
    ctx.strokeStyle = `rgb(${POS.join(",")})`;
    for (let j = 0; j < K; j++) {
      const a = Math.tanh(1.8 * (aRow[j] as number));
      if (a < 1 / 255) continue;
      ctx.globalAlpha = a;
      ctx.beginPath();
      ctx.moveTo(x.gap + 4, yq);
      ctx.lineTo(x.kTok - 4, top + (j + 0.5) * rh);
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
    this.qCol.querySelectorAll(".token.hovered").forEach((el) => el.classList.remove("hovered", "locked"));
    const el = this.qCol.querySelector<HTMLElement>(`.token[data-index="${i}"]`);
    el?.classList.add("hovered");
    if (this.query.isLocked) el?.classList.add("locked");
    this.root.dataset["query"] = String(i);
    this.root.dataset["locked"] = String(this.query.isLocked);
    // Largest |Δ softmax| of this query (test/benchmark hook; "" when not comparing).
    this.root.dataset["deltaMax"] = ref ? dpMax.toPrecision(4) : "";
    this.scores = { cur, ref, i };
  }

  private scores: { cur: Row; ref: Row | null; i: number } | null = null;

  /** Exact numbers as the key token's tooltip (computed on hover; the canvas shows rounded ones). */
  private keyTitle(el: HTMLElement, j: number): void {
    const s = this.scores;
    const d = this.data;
    if (!s || !d) return;
    const right = d.m.key_tokens ?? d.m.tokens;
    const { score, soft, aRow } = s.cur;
    let t =
      `key ${j}: ${right[j] ?? ""}\nquery ${s.i}: ${d.m.tokens[s.i] ?? ""}\n` +
      `q·k·s = ${(score[j] as number).toPrecision(5)}\nsoftmax = ${(soft[j] as number).toPrecision(4)}\n` +
      `logged attention = ${(aRow[j] as number).toPrecision(4)}`;
    if (s.ref && d.ref) {
      const rs = s.ref.score[j] as number;
      const rp = s.ref.soft[j] as number;
      t +=
        `\n${d.ref.ref.label}: q·k·s = ${rs.toPrecision(5)}, softmax = ${rp.toPrecision(4)}` +
        `\nΔ q·k·s = ${((score[j] as number) - rs).toPrecision(4)}, Δ softmax = ${((soft[j] as number) - rp).toPrecision(4)}`;
    }
    el.title = t;
  }

  prefetch(host: ViewHost, step: number): void {
    if (!host.state.manifest.has_qk) return;
    host.qk(step, host.state.layer).catch(() => undefined);
    host.attention(step, host.state.layer).catch(() => undefined);
  }

  onKey(e: KeyboardEvent): boolean {
    if (e.key === "Escape") return this.query.unlock();
    if ((e.key === "ArrowLeft" || e.key === "ArrowRight") && this.data) {
      const H = this.data.qk.H;
      this.head = (this.head + (e.key === "ArrowRight" ? 1 : H - 1)) % H;
      this.headSelect.value = String(this.head);
      this.paint();
      return true;
    }
    return false;
  }
}

function indexOf(e: Event): number | null {
  const el = (e.target as Element).closest<HTMLElement>(".token");
  return el ? Number(el.dataset["index"]) : null;
}

/** Scaled scores q·k·s and their softmax over the unmasked keys (logged weight > 0) for query i of head h. */
function rowOf(qk: QK, attn: Attention, h: number, i: number, scaling: number, prod?: Float32Array): Row {
  const { D, K } = qk;
  const qOff = (h * qk.Q + i) * D;
  const kOff = kvHeadOf(h, qk.H, qk.Hkv) * K * D;
  const aRow = attn.weights.subarray((h * attn.Q + i) * K, (h * attn.Q + i + 1) * K);
  const score = new Float64Array(K);
  for (let j = 0; j < K; j++) {
    let sum = 0;
    for (let c = 0; c < D; c++) {
      const p = (qk.queries[qOff + c] as number) * (qk.keys[kOff + j * D + c] as number);
      if (prod) prod[j * D + c] = p;
      sum += p;
    }
    score[j] = sum * scaling;
  }
  const masked = (j: number): boolean => (aRow[j] as number) === 0;
  let mx = -Infinity;
  for (let j = 0; j < K; j++) if (!masked(j)) mx = Math.max(mx, score[j] as number);
  const soft = new Float64Array(K);
  let z = 0;
  for (let j = 0; j < K; j++) if (!masked(j)) z += soft[j] = Math.exp((score[j] as number) - mx);
  for (let j = 0; j < K; j++) soft[j] = z > 0 ? (soft[j] as number) / z : 0;
  return { score, soft, aRow, masked };
}

function maxAbs(v: Float32Array, off: number, n: number): number {
  let m = 0;
  for (let i = off; i < off + n; i++) m = Math.max(m, Math.abs(v[i] as number));
  return m;
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
function deltaCell(ctx: CanvasRenderingContext2D, x: number, y: number, rh: number, v: number, vmax: number,
  digits: number, font: number): void {
  const t = vmax > 0 ? Math.max(-1, Math.min(1, v / vmax)) : 0;
  ctx.fillStyle = cssColor(PUOR, 127.5 + 127.5 * t);
  ctx.fillRect(x, y + 1, CELL, rh - 2);
  if (rh < 11) return;
  ctx.fillStyle = Math.abs(t) > 0.6 ? "#fff" : "#212121";
  ctx.font = `${font}px system-ui, sans-serif`;
  ctx.fillText((v > 0 ? "+" : "") + v.toFixed(digits), x + CELL - 3, y + rh / 2);
}
