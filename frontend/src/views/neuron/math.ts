// The neuron view's arithmetic: the q·k scaling a layer used, which key head a query head reads (grouped-query
// attention), and one query's scaled scores and softmax recomputed from the logged q/k. The softmax runs over
// the keys the model did not mask (inferred: logged weight 0), so a difference to the logged weights reveals
// biases or masks the q/k do not carry.

import type { Attention, Manifest, QK } from "../../data/api";

/** Scaling for `layer`: the manifest's `scaling` (number or per-layer list) when present, else 1/√d. */
export function scalingOf(m: Manifest, layer: number, d: number): { value: number; known: boolean } {
  const s = m.scaling;
  const v = Array.isArray(s) ? s[layer] : s;
  return typeof v === "number" && Number.isFinite(v)
    ? { value: v, known: true }
    : { value: 1 / Math.sqrt(d), known: false };
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
}

/**
 * Scaled scores q·k·s and their softmax over the unmasked keys (logged weight > 0) for query i of head h;
 * `prod`, when given, receives q⊙k ([K, D]).
 */
export function rowOf(qk: QK, attn: Attention, h: number, i: number, scaling: number, prod?: Float32Array): Row {
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

export function maxAbs(v: Float32Array, off: number, n: number): number {
  let m = 0;
  for (let i = off; i < off + n; i++) m = Math.max(m, Math.abs(v[i] as number));
  return m;
}
