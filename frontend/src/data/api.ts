// Typed wrappers for the plugin's HTTP routes (docs/http_api.md). URLs stay relative: the iframe's
// <base href="plugin/attention/"> makes them resolve under whatever prefix TensorBoard is served at.

import { decodeCbrt8, decodeContainer, type Container } from "./container";
import { request } from "./transport";

export interface RunInfo {
  run: string;
  probes: string[];
  /** Series this version cannot read (e.g. written by a newer tb-attention), with the server's explanation. */
  problems?: { tag: string; message: string }[];
  /** Tags with per-head metrics but no attention step (add_metrics only); fetchRuns folds them into `probes`. */
  metrics_only?: string[];
}

export interface Manifest {
  version: number;
  tokens: string[];
  key_tokens: string[] | null;
  num_layers: number;
  num_heads: number;
  query_len: number;
  key_len: number;
  has_qk: boolean;
  num_kv_heads: number | null;
  d_head: number | null;
  /** Optional: the q·k scaling the model used (one number, or one per layer); superseded by `layers[l].scaling`. */
  scaling?: number | number[] | null;
  /** Optional: per stored layer, the model's layer/head indices and recompute parameters (docs/format.md). */
  layers?: LayerInfo[] | null;
  /** Optional: segment id per query token (sentence A = 0, B = 1, …). */
  segments?: number[] | null;
  /** Optional (ViT): tokens 0..num_special-1 are CLS/registers, token i ≥ num_special is patch
   * divmod(i − num_special, cols). */
  patch_grid?: { rows: number; cols: number; num_special: number; patch_size: [number, number] | null } | null;
  /** Optional: the probe's input image (PNG, `image` route). */
  image?: { index: number; width: number; height: number } | null;
  /** Optional (version 3): per stored layer, what its attention blob holds; absent: every layer holds weights. */
  storage?: LayerStorage[] | null;
  /** Frontend only: a metrics-only tag's stand-in manifest (no tokens, [L, H] of its metrics; metricsManifest). */
  metricsOnly?: boolean;
  /** Frontend only: probe positions of the tokens a token subset kept (tokenFilter.ts); absent: all. */
  kept?: { q: number[] | null; k: number[] | null };
}

/** docs/format.md, "Storage per layer": a "qk" layer is rebuilt from its q/k on the server, one head or tile at a time. */
export type LayerStorage = "weights" | "both" | "qk";

/** One entry of the manifest's `layers` (docs/format.md, "Layers"); absent or null fields are unknown. */
export interface LayerInfo {
  index: number;
  heads?: number[] | null;
  kv_heads?: number[] | null;
  scaling?: number | null;
  softcap?: number | null;
  mask?: "none" | "causal" | "sliding" | "chunked" | "band" | "prefix" | "tensor" | null;
  offset?: number | null;
  window?: number | null;
  chunk?: number | null;
  prefix?: number | null;
  bias?: string | null;
  sinks?: number[] | null;
}

export interface Attention {
  H: number;
  Q: number;
  K: number;
  /** Decoded weights, [H, Q, K] row-major. */
  weights: Float32Array;
}

/** Weights that do not fit the step's tokens (a damaged or mismatched series) must not be drawn against them. */
export function checkShape(attn: Attention, q: number, k: number): void {
  if (attn.Q !== q || attn.K !== k) {
    throw new Error(`attention is ${attn.Q}×${attn.K} but the step has ${q} query and ${k} key tokens`);
  }
}

/** Queries and keys of one layer (post-RoPE where the model applies RoPE: what the model actually used). */
export interface QK {
  H: number;
  Hkv: number;
  Q: number;
  K: number;
  D: number;
  /** [H, Q, D] row-major. */
  queries: Float32Array;
  /** [H_kv, K, D] row-major; not repeated for grouped-query attention. */
  keys: Float32Array;
  meta: Record<string, unknown>;
  /** One head of a "qk" layer with `bias: "relative"` (`qk?head=`): [Q + K − 1], key j of query i adds bias[j − i + Q − 1]. */
  bias?: Float32Array;
}

export interface HeadStats {
  steps: Float64Array;
  /** Mean entropy in nats, [S, L, H] row-major. */
  entropy: Float32Array;
  numLayers: number;
  numHeads: number;
  /** The model's numbering of the rows/columns (meta.layers, docs/http_api.md); null: stored positions. */
  layers: LayerInfo[] | null;
}

/** An HTTP failure carrying the server's plain-text message (never HTML, never a traceback). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function get(route: string, params: Record<string, string | number> = {}): Promise<Response> {
  const query = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)])).toString();
  const res = await request(query ? `${route}?${query}` : route);
  if (!res.ok) {
    const text = (await res.text().catch(() => "")).trim().slice(0, 500);
    throw new HttpError(res.status, `${route}: ${text || res.statusText || "request failed"} (HTTP ${res.status})`);
  }
  return res;
}

export async function getContainer(route: string, params: Record<string, string | number>): Promise<Container> {
  return decodeContainer(await (await get(route, params)).arrayBuffer());
}

// Metrics-only tags (add_metrics without any attention step) are listed with the probes so that the shell can
// select them unchanged: their steps are the metrics' and their manifest a stand-in of the metrics' shape, which
// the Evolution tab draws and every other tab refuses with the attention route's 404.
const metricsOnly = new Map<string, Promise<HeadStats> | null>(); // null until first asked
const runTag = (run: string, tag: string): string => `${run}\u0000${tag}`;

export async function fetchRuns(): Promise<RunInfo[]> {
  const body = (await (await get("runs")).json()) as { runs: RunInfo[] };
  metricsOnly.clear(); // Reload: new steps
  for (const r of body.runs) {
    for (const tag of r.metrics_only ?? []) metricsOnly.set(runTag(r.run, tag), null);
    r.probes = [...r.probes, ...(r.metrics_only ?? [])];
  }
  return body.runs;
}

function metricsOf(run: string, tag: string): Promise<HeadStats> | null {
  const k = runTag(run, tag);
  if (!metricsOnly.has(k)) return null;
  let p = metricsOnly.get(k);
  if (!p) metricsOnly.set(k, (p = fetchHeadStats(run, tag)));
  return p;
}

export async function fetchSteps(run: string, tag: string): Promise<number[]> {
  const stats = metricsOf(run, tag);
  if (stats) return Array.from((await stats).steps);
  const body = (await (await get("steps", { run, tag })).json()) as { steps: number[] };
  return body.steps;
}

export async function fetchManifest(run: string, tag: string, step: number): Promise<Manifest> {
  const stats = metricsOf(run, tag);
  if (stats) return metricsManifest(await stats);
  return (await (await get("tokens", { run, tag, step })).json()) as Manifest;
}

function metricsManifest(s: HeadStats): Manifest {
  return {
    version: 0,
    tokens: [],
    key_tokens: null,
    num_layers: s.numLayers,
    num_heads: s.numHeads,
    query_len: 0,
    key_len: 0,
    has_qk: false,
    num_kv_heads: null,
    d_head: null,
    layers: s.layers,
    metricsOnly: true,
  };
}

/** One layer, all heads; or with `head`, only that head (H = 1). */
export async function fetchAttention(
  run: string,
  tag: string,
  step: number,
  layer: number,
  head?: number,
): Promise<Attention> {
  const params: Record<string, string | number> = { run, tag, step, layer };
  if (head !== undefined) params["head"] = head;
  const c = await getContainer("attention", params);
  const codes = c.arrays["codes"];
  const rowExp = c.arrays["row_exp"];
  if (c.meta["encoding"] !== "cbrt8" || !codes || !rowExp || codes.shape.length !== 3) {
    throw new Error(`attention: unexpected payload (encoding ${JSON.stringify(c.meta["encoding"])})`);
  }
  const [H, Q, K] = codes.shape as [number, number, number];
  const weights = decodeCbrt8(codes.data as Uint8Array, rowExp.data as Uint8Array, H, Q, K);
  return { H, Q, K, weights };
}

export async function fetchHeadStats(run: string, tag: string): Promise<HeadStats> {
  const c = await getContainer("head_stats", { run, tag });
  const steps = c.arrays["steps"];
  const entropy = c.arrays["entropy"];
  if (!steps || !entropy || entropy.shape.length !== 3) throw new Error("head_stats: unexpected payload");
  const [, numLayers, numHeads] = entropy.shape as [number, number, number];
  const layers = Array.isArray(c.meta["layers"]) ? (c.meta["layers"] as LayerInfo[]) : null;
  return { steps: steps.data as Float64Array, entropy: entropy.data as Float32Array, numLayers, numHeads, layers };
}

export async function fetchQK(run: string, tag: string, step: number, layer: number): Promise<QK> {
  const c = await getContainer("qk", { run, tag, step, layer });
  const q = c.arrays["queries"];
  const k = c.arrays["keys"];
  if (!q || !k || q.shape.length !== 3 || k.shape.length !== 3) throw new Error("qk: unexpected payload");
  const [H, Q, D] = q.shape as [number, number, number];
  const [Hkv, K] = k.shape as [number, number, number];
  return { H, Hkv, Q, K, D, queries: q.data as Float32Array, keys: k.data as Float32Array, meta: c.meta };
}
