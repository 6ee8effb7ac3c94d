// Data for the evolution view: every per-head metric series of a probe (head_stats), the Jensen–Shannon distance
// between two logged steps (head_diff) and attention rollout (rollout). Routes: docs/http_api.md.

import type { LayerInfo } from "../../data/api";
import { decodeContainer, type Container } from "../../data/container";
import { request } from "../../data/transport";

export interface MetricSeries {
  /** Every step that has metrics, ascending (usually every training step). */
  steps: Float64Array;
  /** Metric names in display order. */
  names: string[];
  /** name → [S, L, H] row-major; NaN = undefined / not logged at that step. */
  data: Map<string, Float32Array>;
  L: number;
  H: number;
  /** The model's layer/head numbers of the [L, H] rows and columns (meta.layers); null: stored positions. */
  layers: LayerInfo[] | null;
}

export interface Rollout {
  L: number;
  T: number;
  /** [L, T, T] row-major: rollout after each layer. */
  data: Float32Array;
}

/** Display order and fixed ranges; metrics without a fixed range use the data's range. */
export const METRICS: { name: string; label: string; range?: [number, number] }[] = [
  { name: "induction", label: "induction score", range: [0, 1] },
  { name: "prev_token", label: "previous-token score", range: [0, 1] },
  { name: "entropy", label: "entropy (nats)" },
  { name: "entropy_norm", label: "entropy / log(keys)", range: [0, 1] },
  { name: "distance", label: "mean attention distance (tokens)" },
  { name: "max_weight", label: "max weight", range: [0, 1] },
  { name: "topk_mass", label: "top-3 mass", range: [0, 1] },
  { name: "sink_mass", label: "first-token (sink) mass", range: [0, 1] },
  { name: "diagonal", label: "diagonal (self) score", range: [0, 1] },
];

async function container(route: string, params: Record<string, string | number>): Promise<Container | null> {
  const query = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)])).toString();
  const res = await request(`${route}?${query}`);
  if (res.status === 404 && route === "head_stats") return null;
  if (!res.ok) {
    const text = (await res.text().catch(() => "")).trim().slice(0, 300);
    throw new Error(`${route}: ${text || res.statusText} (HTTP ${res.status})`);
  }
  return decodeContainer(await res.arrayBuffer());
}

/** null when the probe has no metric series. */
export async function fetchMetrics(run: string, tag: string): Promise<MetricSeries | null> {
  const c = await container("head_stats", { run, tag });
  if (!c) return null;
  const steps = c.arrays["steps"];
  if (!steps) throw new Error("head_stats: no steps");
  const data = new Map<string, Float32Array>();
  let L = 0;
  let H = 0;
  for (const [name, arr] of Object.entries(c.arrays)) {
    if (name === "steps" || name === "wall_times" || arr.shape.length !== 3) continue;
    L = arr.shape[1] as number;
    H = arr.shape[2] as number;
    data.set(name, arr.data as Float32Array);
  }
  const known = METRICS.map((m) => m.name).filter((n) => data.has(n));
  const other = [...data.keys()].filter((n) => !known.includes(n)).sort();
  const layers = Array.isArray(c.meta["layers"]) ? (c.meta["layers"] as LayerInfo[]) : null;
  return { steps: steps.data as Float64Array, names: [...known, ...other], data, L, H, layers };
}

export async function fetchJsd(
  run: string,
  tag: string,
  step: number,
  runB: string,
  tagB: string,
  stepB: number,
): Promise<Float32Array> {
  const c = await container("head_diff", { run, tag, step, run_b: runB, tag_b: tagB, step_b: stepB });
  const jsd = c?.arrays["jsd"];
  if (!jsd) throw new Error("head_diff: no jsd");
  return jsd.data as Float32Array;
}

export async function fetchRollout(
  run: string,
  tag: string,
  step: number,
  fusion: string,
  residual: number,
): Promise<Rollout> {
  const c = await container("rollout", { run, tag, step, fusion, residual });
  const r = c?.arrays["rollout"];
  if (!r || r.shape.length !== 3) throw new Error("rollout: unexpected payload");
  return { L: r.shape[0] as number, T: r.shape[1] as number, data: r.data as Float32Array };
}

/** Index of the last step ≤ `step` (the metrics in effect at that step); -1 when none. */
export function stepIndexAtOrBefore(steps: Float64Array, step: number): number {
  let lo = 0;
  let hi = steps.length - 1;
  let best = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if ((steps[mid] as number) <= step) {
      best = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return best;
}
