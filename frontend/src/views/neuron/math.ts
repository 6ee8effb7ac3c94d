// The neuron view's arithmetic: how a layer's weights are recomputed from the logged q/k (the manifest's per-layer
// `layers` entry: scaling, softcap, mask, sinks, bias; docs/format.md), which key head a query head reads
// (grouped-query attention), and one query's scaled scores and softmax. What is unknown is said, never assumed
// silently: without a logged scaling the view uses 1/√d and labels it "assumed"; without a logged mask it infers
// the masked keys from the logged weights (0 = masked).

import type { Attention, LayerInfo, Manifest, QK } from "../../data/api";
import { layerInfo } from "../../data/labels";

/** Everything the softmax of one stored layer is recomputed with, and where each part came from. */
export interface Recompute {
  scaling: number;
  /** "logged": the manifest's per-layer scaling; "manifest": its older top-level `scaling`; "assumed": 1/√d. */
  scalingFrom: "logged" | "manifest" | "assumed";
  softcap: number | null;
  /** Per stored head, or null. */
  sinks: number[] | null;
  /** null: unknown (inferred from the logged zeros); "tensor": an arbitrary mask, also inferred. */
  mask: LayerInfo["mask"] | null;
  offset: number;
  window: number;
  chunk: number;
  prefix: number;
  /** null: unknown; "none": no additive term; anything else: a term the q/k do not carry. */
  bias: string | null;
  /** A "relative" bias whose table came with the q/k (`qk?head=`): added to the scores, so the softmax has it. */
  biasTable?: boolean;
  /** Probe positions of the query / key tokens shown (special tokens hidden), for the mask; null: all. */
  qpos: number[] | null;
  kpos: number[] | null;
}

export function recomputeOf(m: Manifest, layer: number, d: number): Recompute {
  const info = layerInfo(m, layer);
  const old = Array.isArray(m.scaling) ? m.scaling[layer] : m.scaling;
  const num = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
  const logged = info?.scaling;
  const [scaling, scalingFrom]: [number, Recompute["scalingFrom"]] = num(logged)
    ? [logged, "logged"]
    : num(old)
      ? [old, "manifest"]
      : [1 / Math.sqrt(d), "assumed"];
  return {
    scaling,
    scalingFrom,
    softcap: num(info?.softcap) ? info.softcap : null,
    sinks: Array.isArray(info?.sinks) ? info.sinks : null,
    mask: info?.mask ?? null,
    offset: num(info?.offset) ? info.offset : 0,
    window: num(info?.window) ? info.window : 0,
    chunk: num(info?.chunk) && info.chunk > 0 ? info.chunk : 1,
    prefix: num(info?.prefix) ? info.prefix : 0,
    bias: info ? (info.bias ?? null) : null,
    qpos: m.kept?.q ?? null,
    kpos: m.kept?.k ?? null,
  };
}

/** Whether query i may attend to key j under the logged mask (true/false), or null when the mask is not known. */
export function allowed(r: Recompute, i: number, j: number): boolean | null {
  const q = (r.qpos ? (r.qpos[i] as number) : i) + r.offset;
  const k = r.kpos ? (r.kpos[j] as number) : j;
  switch (r.mask) {
    case "none":
      return true;
    case "causal":
      return k <= q;
    case "sliding":
      return k <= q && k > q - r.window;
    case "chunked":
      return k <= q && Math.floor(k / r.chunk) === Math.floor(q / r.chunk);
    case "band":
      return Math.abs(q - k) <= r.window;
    case "prefix":
      return k <= q || k < r.prefix;
    default:
      return null;
  }
}

/** Query head h reads key head h // (H / H_kv) (grouped-query attention). */
export function kvHeadOf(h: number, H: number, Hkv: number): number {
  return Math.floor(h / Math.max(1, H / Math.max(1, Hkv)));
}

/** One query row of one head. */
export interface Row {
  score: Float64Array;
  soft: Float64Array;
  /** The logged (or server-rebuilt) weights; the softmax itself when none were loaded (`logged` false). */
  aRow: Float32Array;
  logged: boolean;
  masked: (j: number) => boolean;
  /** Per key: how far softmax and logged may differ from storage alone (8-bit weights, fp16 q/k). */
  tol: Float64Array;
  /** Largest |softmax − logged| over the keys not masked, and whether every key is within `tol`. */
  maxDiff: number;
  withinStorage: boolean;
  /** The sink's share of the row (0 without sinks). */
  sinkMass: number;
  /** Largest |q_c k_c| over every key: the q⊙k strip's scale (the strip is computed for the rows drawn only). */
  prodMax: number;
}

const FP16 = 2 ** -11; // relative rounding of each stored q/k component

/**
 * Scores q·k·s (softcapped when the layer was, plus a relative-bias layer's position term), their softmax over the
 * allowed keys (plus the sink logit), and how they compare with the logged weights, for query i of head h. `attn`
 * null: no weights loaded (one head past 2^26 weights, which the server refuses): the softmax is the only weight.
 */
export function rowOf(qk: QK, attn: Attention | null, h: number, i: number, r: Recompute): Row {
  const { D, K } = qk;
  const qOff = (h * qk.Q + i) * D;
  const kh = kvHeadOf(h, qk.H, qk.Hkv);
  const kOff = kh * K * D;
  const score = new Float64Array(K);
  const q = qk.queries.subarray(qOff, qOff + D);
  const keys = qk.keys;
  const aRow = attn ? attn.weights.subarray((h * attn.Q + i) * K, (h * attn.Q + i + 1) * K) : new Float32Array(K);
  // Once per row: the loops below and the drawing ask for every key several times (32,768 keys at long probes).
  // Without weights an unknown mask cannot be inferred: every key counts (describe() says the mask is unknown).
  const isMasked = new Uint8Array(K);
  for (let j = 0; j < K; j++) {
    const a = allowed(r, i, j);
    isMasked[j] = (a === null ? attn !== null && (aRow[j] as number) === 0 : !a) ? 1 : 0;
  }
  const masked = (j: number): boolean => isMasked[j] === 1;
  const ks = keyStats(qk, kh);
  let qNorm = 0;
  let prodMax = 0; // max over keys and c of |q_c k_c| = max_c |q_c| · max_j |k_jc|
  for (let c = 0; c < D; c++) {
    const v = q[c] as number;
    qNorm += v * v;
    prodMax = Math.max(prodMax, Math.abs(v) * (ks.colMax[c] as number));
  }
  qNorm = Math.sqrt(qNorm);
  // Key j of query i adds bias[j − i + Q − 1] (docs/format.md, after the softcap), when its table came with q/k.
  const bias = r.biasTable ? (qk.bias ?? null) : null;
  // q·k over K keys × D: the hover's cost (4M multiply-adds at 32,768 × 128), so four sums per key, masked keys
  // skipped (their cells are greyed; the tooltip says masked).
  for (let j = 0; j < K; j++) {
    if (isMasked[j]) {
      score[j] = NaN;
      continue;
    }
    const o = kOff + j * D;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    let c = 0;
    for (; c + 3 < D; c += 4) {
      s0 += (q[c] as number) * (keys[o + c] as number);
      s1 += (q[c + 1] as number) * (keys[o + c + 1] as number);
      s2 += (q[c + 2] as number) * (keys[o + c + 2] as number);
      s3 += (q[c + 3] as number) * (keys[o + c + 3] as number);
    }
    for (; c < D; c++) s0 += (q[c] as number) * (keys[o + c] as number);
    let sc = (s0 + s1 + s2 + s3) * r.scaling;
    if (r.softcap) sc = r.softcap * Math.tanh(sc / r.softcap);
    if (bias) sc += bias[j - i + qk.Q - 1] as number;
    score[j] = sc;
  }
  const soft = new Float64Array(K);
  const sink = r.sinks ? (r.sinks[h] ?? null) : null;
  let mx = sink ?? -Infinity;
  for (let j = 0; j < K; j++) if (!masked(j)) mx = Math.max(mx, score[j] as number);
  let z = sink === null ? 0 : Math.exp(sink - mx);
  const sinkTerm = z;
  for (let j = 0; j < K; j++) if (!masked(j)) z += soft[j] = Math.exp((score[j] as number) - mx);
  for (let j = 0; j < K; j++) soft[j] = z > 0 ? (soft[j] as number) / z : 0;
  if (!attn) aRow.set(soft);
  // Storage precision (docs/format.md): the cbrt8 bound on the logged weight, plus the softmax's response to the
  // fp16 rounding of q and k (a score error e moves p by at most about 2·p·e).
  let m = 0;
  for (let j = 0; j < K; j++) m = Math.max(m, aRow[j] as number);
  const tol = new Float64Array(K);
  const cm = Math.cbrt(m);
  let maxDiff = 0;
  let within = true;
  for (let j = 0; j < K; j++) {
    const w = aRow[j] as number;
    const p = soft[j] as number;
    // fp16 rounding moves the score by about 2^-10 · s · ‖q‖‖k‖ (docs/format.md, "Recompute bound").
    const e = 2 * FP16 * r.scaling * qNorm * (ks.norm[j] as number) * 1.5;
    const stored = attn ? (w > 0 ? 0.00606 * cm * Math.pow(w, 2 / 3) : 0) + 1.23e-5 * m : 0;
    tol[j] = stored + 2 * p * e + 1e-6;
    if (masked(j)) {
      if (w > tol[j]) within = false; // the model attended where the logged mask says it cannot
      continue;
    }
    const diff = Math.abs(p - w);
    maxDiff = Math.max(maxDiff, diff);
    if (diff > (tol[j] as number)) within = false;
  }
  const sinkMass = z > 0 ? sinkTerm / z : 0;
  return { score, soft, aRow, logged: attn !== null, masked, tol, maxDiff, withinStorage: within, sinkMass, prodMax };
}

/** Per key head of a q/k array: each key's norm and each component's largest |k|, computed once (not per hover). */
const statsCache = new WeakMap<Float32Array, Map<number, { norm: Float64Array; colMax: Float64Array }>>();

function keyStats(qk: QK, kh: number): { norm: Float64Array; colMax: Float64Array } {
  let byHead = statsCache.get(qk.keys);
  if (!byHead) statsCache.set(qk.keys, (byHead = new Map()));
  const hit = byHead.get(kh);
  if (hit) return hit;
  const { K, D } = qk;
  const norm = new Float64Array(K);
  const colMax = new Float64Array(D);
  for (let j = 0; j < K; j++) {
    let n = 0;
    for (let c = 0; c < D; c++) {
      const v = qk.keys[(kh * K + j) * D + c] as number;
      n += v * v;
      if (Math.abs(v) > (colMax[c] as number)) colMax[c] = Math.abs(v);
    }
    norm[j] = Math.sqrt(n);
  }
  const out = { norm, colMax };
  byHead.set(kh, out);
  return out;
}

export function maxAbs(v: Float32Array, off: number, n: number): number {
  let m = 0;
  for (let i = off; i < off + n; i++) m = Math.max(m, Math.abs(v[i] as number));
  return m;
}

/** One line saying what the softmax column was computed with, for the view's info bar. */
export function describe(r: Recompute, d: number): string {
  const parts: string[] = [];
  parts.push(
    r.scalingFrom === "assumed"
      ? `scaling 1/√${d} = ${r.scaling.toPrecision(4)} (ASSUMED: this probe did not log the layer's scaling)`
      : `scaling ${r.scaling.toPrecision(4)} (logged)`,
  );
  if (r.softcap) parts.push(`softcap ${r.softcap}`);
  if (r.sinks) parts.push("attention sinks (one logit per head in the denominator)");
  parts.push(
    r.mask === null
      ? "mask unknown (keys with logged weight 0 treated as masked)"
      : r.mask === "tensor"
        ? "custom mask (inferred from logged zeros)"
        : r.mask === "none"
          ? "no mask"
          : r.mask === "sliding"
            ? `sliding-window mask (window ${r.window})`
            : r.mask === "chunked"
              ? `chunked causal mask (chunks of ${r.chunk})`
              : r.mask === "band"
                ? `band mask (±${r.window} tokens)`
                : `${r.mask} mask`,
  );
  if (r.bias === null) parts.push("additive position bias unknown");
  else if (r.bias === "relative" && r.biasTable) parts.push("relative position bias (the stored table, in q·k·s)");
  else if (r.bias !== "none") parts.push(`an additive ${r.bias} bias q·k do not carry (softmax ≠ logged)`);
  return parts.join(" · ");
}
