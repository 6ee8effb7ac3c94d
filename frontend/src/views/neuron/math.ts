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
  aRow: Float32Array;
  masked: (j: number) => boolean;
  /** Per key: how far softmax and logged may differ from storage alone (8-bit weights, fp16 q/k). */
  tol: Float64Array;
  /** Largest |softmax − logged| over the keys not masked, and whether every key is within `tol`. */
  maxDiff: number;
  withinStorage: boolean;
  /** The sink's share of the row (0 without sinks). */
  sinkMass: number;
}

const FP16 = 2 ** -11; // relative rounding of each stored q/k component

/**
 * Scores q·k·s (softcapped when the layer was), their softmax over the allowed keys (plus the sink logit), and
 * how they compare with the logged weights, for query i of head h; `prod`, when given, receives q⊙k ([K, D]).
 */
export function rowOf(qk: QK, attn: Attention, h: number, i: number, r: Recompute, prod?: Float32Array): Row {
  const { D, K } = qk;
  const qOff = (h * qk.Q + i) * D;
  const kOff = kvHeadOf(h, qk.H, qk.Hkv) * K * D;
  const aRow = attn.weights.subarray((h * attn.Q + i) * K, (h * attn.Q + i + 1) * K);
  const score = new Float64Array(K);
  const spread = new Float64Array(K); // Σ|q_c k_c|·s: bounds the fp16 error of the score
  for (let j = 0; j < K; j++) {
    let sum = 0;
    let abs = 0;
    for (let c = 0; c < D; c++) {
      const p = (qk.queries[qOff + c] as number) * (qk.keys[kOff + j * D + c] as number);
      if (prod) prod[j * D + c] = p;
      sum += p;
      abs += Math.abs(p);
    }
    let s = sum * r.scaling;
    if (r.softcap) s = r.softcap * Math.tanh(s / r.softcap);
    score[j] = s;
    spread[j] = abs * r.scaling;
  }
  const known = (j: number): boolean | null => allowed(r, i, j);
  const masked = (j: number): boolean => {
    const a = known(j);
    return a === null ? (aRow[j] as number) === 0 : !a;
  };
  const sink = r.sinks ? (r.sinks[h] ?? null) : null;
  let mx = sink ?? -Infinity;
  for (let j = 0; j < K; j++) if (!masked(j)) mx = Math.max(mx, score[j] as number);
  const soft = new Float64Array(K);
  let z = sink === null ? 0 : Math.exp(sink - mx);
  const sinkTerm = z;
  for (let j = 0; j < K; j++) if (!masked(j)) z += soft[j] = Math.exp((score[j] as number) - mx);
  for (let j = 0; j < K; j++) soft[j] = z > 0 ? (soft[j] as number) / z : 0;
  // Storage precision (docs/format.md): the cbrt8 bound on the logged weight, plus the softmax's response to the
  // fp16 rounding of q and k (a score error e moves p by at most about 2·p·e).
  let m = 0;
  for (let j = 0; j < K; j++) m = Math.max(m, aRow[j] as number);
  const tol = new Float64Array(K);
  let maxDiff = 0;
  let within = true;
  for (let j = 0; j < K; j++) {
    const w = aRow[j] as number;
    const p = soft[j] as number;
    const e = 2 * FP16 * (spread[j] as number) * 1.5;
    tol[j] = 0.00606 * Math.cbrt(m) * Math.pow(w, 2 / 3) + 1.23e-5 * m + 2 * p * e + 1e-6;
    if (masked(j)) {
      if (w > tol[j]) within = false; // the model attended where the logged mask says it cannot
      continue;
    }
    const diff = Math.abs(p - w);
    maxDiff = Math.max(maxDiff, diff);
    if (diff > (tol[j] as number)) within = false;
  }
  return { score, soft, aRow, masked, tol, maxDiff, withinStorage: within, sinkMass: z > 0 ? sinkTerm / z : 0 };
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
  else if (r.bias !== "none") parts.push(`an additive ${r.bias} bias q·k do not carry (softmax ≠ logged)`);
  return parts.join(" · ");
}
