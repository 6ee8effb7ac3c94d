// Typed wrappers for the joint query-key embedding routes (docs/http_api.md, docs/embedding.md).

import { HttpError } from "../../data/api";
import { decodeContainer } from "../../data/container";
import { request as send } from "../../data/transport";

export type Method = "pca" | "faithful" | "tsne" | "umap";
export const METHODS: Method[] = ["faithful", "pca", "tsne", "umap"];
export const METHOD_LABEL: Record<Method, string> = {
  faithful: "Faithful (default)",
  pca: "PCA",
  tsne: "t-SNE",
  umap: "UMAP",
};

export interface BatchInfo {
  tag: string;
  probes: string[];
  steps: number[];
  num_layers: number;
  num_heads: number;
  num_kv_heads: number | null;
  d_head: number | null;
  has_qk: boolean;
  tokens: string[][];
  key_tokens: (string[] | null)[];
  methods: Record<Method, boolean>;
  /** A notebook output's batch (tb_attention/notebook/qk_layouts.py): the one layout setting it embeds. */
  only?: Options;
}

export interface Options {
  method: Method;
  translate: boolean;
  scale: boolean;
}

export interface Scores {
  faithfulness: number | null;
  original: number | null;
  mixing: number | null;
}

export interface HeadLayout extends Scores {
  method: Method;
  /** World coordinates, [N, 2] row-major: queries first, then keys. */
  xy: Float32Array;
  norm: Float32Array;
  numQueries: number;
  numKeys: number;
  scale: number | null;
  aligned: boolean;
  /** As MatrixLayout.scoreQueries. */
  scoreQueries: number | null;
  /** How many points the server laid out when it sampled them (the rest are NaN in `xy`), else null. */
  shownPoints: number | null;
}

export interface MatrixLayout {
  method: Method;
  /** The first layer of this part of the matrix (the view asks for a layer at a time) and how many it holds. */
  layer0: number;
  L: number;
  H: number;
  N: number;
  /** Queries among the N points (the first ones). */
  numQueries: number;
  /** Beyond the server's point limit, the batch's point each of the N is (queries, then keys); null: all. */
  index: Int32Array | null;
  /** How many evenly spaced queries the scores use when they are a sample (meta.score_sampled), else null. */
  scoreQueries: number | null;
  /** [L, H, N, 2] uint8 coordinates inside each head's own box. */
  xy: Uint8Array;
  faithfulness: Float32Array;
  original: Float32Array;
  mixing: Float32Array;
}

/** A nonlinear layout still being computed: the server answered 202 with its job's progress. */
export interface Pending {
  pending: true;
  state: string;
  progress: number;
}

function url(route: string, params: Record<string, string | number>): string {
  return `${route}?${new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)])).toString()}`;
}

async function request(route: string, params: Record<string, string | number>): Promise<Response> {
  const res = await send(url(route, params));
  if (!res.ok) {
    const text = (await res.text().catch(() => "")).trim().slice(0, 500);
    throw new HttpError(res.status, `${route}: ${text || res.statusText || "request failed"} (HTTP ${res.status})`);
  }
  return res;
}

export async function fetchBatchInfo(run: string, tag: string): Promise<BatchInfo> {
  return (await (await request("embedding_info", { run, tag })).json()) as BatchInfo;
}

function optionParams(o: Options): Record<string, string> {
  return { method: o.method, translate: o.translate ? "1" : "0", scale: o.scale ? "1" : "0" };
}

function num(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

export async function fetchHead(
  run: string,
  tag: string,
  step: number,
  layer: number,
  head: number,
  o: Options,
): Promise<HeadLayout | Pending> {
  const res = await request("embedding", { run, tag, step, layer, head, ...optionParams(o) });
  if (res.status === 202) return { pending: true, ...((await res.json()) as { state: string; progress: number }) };
  const c = decodeContainer(await res.arrayBuffer());
  const xyArr = c.arrays["xy"];
  const norm = c.arrays["norm"];
  if (!xyArr || !norm) throw new Error("embedding: unexpected payload");
  const bbox = c.meta["bbox"] as [number, number, number, number];
  const unit = xyArr.data as Float32Array;
  const index = c.arrays["index"]?.data as Int32Array | undefined;
  // A head beyond the server's point limit comes as a sample (meta.points_sampled, `index`): the others are NaN,
  // which the scatter skips, so point i stays the batch's point i for tokens, colours and lines.
  const numQueries = Number(c.meta[index ? "total_queries" : "num_queries"]);
  const numKeys = Number(c.meta[index ? "total_keys" : "num_keys"]);
  const xy = new Float32Array(index ? 2 * (numQueries + numKeys) : unit.length).fill(NaN);
  const norms = index ? new Float32Array(numQueries + numKeys).fill(NaN) : (norm.data as Float32Array);
  const sx = bbox[2] - bbox[0];
  const sy = bbox[3] - bbox[1];
  for (let n = 0; n < unit.length / 2; n++) {
    const i = index ? (index[n] as number) : n;
    xy[2 * i] = bbox[0] + (unit[2 * n] as number) * sx;
    xy[2 * i + 1] = bbox[1] + (unit[2 * n + 1] as number) * sy;
    if (index) norms[i] = (norm.data as Float32Array)[n] as number;
  }
  return {
    method: c.meta["method"] as Method,
    xy,
    norm: norms,
    numQueries,
    numKeys,
    faithfulness: num(c.meta["faithfulness"]),
    original: num(c.meta["original"]),
    mixing: num(c.meta["mixing"]),
    scale: num(c.meta["scale"]),
    aligned: c.meta["aligned"] === true,
    scoreQueries: c.meta["score_sampled"] === true ? Number(c.meta["score_queries"]) : null,
    shownPoints: index ? index.length : null,
  };
}

/** The matrix of layers `layers` = [first, last] (inclusive), or of every layer when null. */
export async function fetchMatrix(
  run: string,
  tag: string,
  step: number,
  o: Options,
  layers: [number, number] | null = null,
): Promise<MatrixLayout | Pending> {
  const part = layers ? { layers: layers[0] === layers[1] ? `${layers[0]}` : `${layers[0]}-${layers[1]}` } : {};
  const res = await request("embedding_matrix", { run, tag, step, ...optionParams(o), ...part });
  if (res.status === 202) return { pending: true, ...((await res.json()) as { state: string; progress: number }) };
  const c = decodeContainer(await res.arrayBuffer());
  const xy = c.arrays["xy"];
  const f = c.arrays["faithfulness"];
  const orig = c.arrays["original"];
  const mix = c.arrays["mixing"];
  if (!xy || !f || !orig || !mix || xy.shape.length !== 4) throw new Error("embedding_matrix: unexpected payload");
  const [L, H, N] = xy.shape as [number, number, number, number];
  return {
    method: c.meta["method"] as Method,
    layer0: layers ? layers[0] : 0,
    L,
    H,
    N,
    numQueries: Number(c.meta["num_queries"]),
    index: (c.arrays["index"]?.data as Int32Array | undefined) ?? null,
    scoreQueries: c.meta["score_sampled"] === true ? Number(c.meta["score_queries"]) : null,
    xy: xy.data as Uint8Array,
    faithfulness: f.data as Float32Array,
    original: orig.data as Float32Array,
    mixing: mix.data as Float32Array,
  };
}

/** The layout settings `info` offers, set on the view's controls; returns the options to request. A notebook
 * output holds one setting (`only`); a server offers every method it has installed. */
export function offerSettings(
  info: BatchInfo,
  method: HTMLSelectElement,
  translate: HTMLInputElement,
  scale: HTMLInputElement,
  current: Options,
): Options {
  const only = info.only;
  for (const m of METHODS) {
    const o = method.querySelector<HTMLOptionElement>(`option[value=${m}]`);
    if (!o) continue;
    const ok = only ? m === only.method : info.methods[m];
    o.disabled = !ok;
    o.title = ok ? "" : only ? NOTEBOOK_ONLY : "not installed on the TensorBoard server";
  }
  translate.disabled = scale.disabled = only !== undefined;
  translate.title = scale.title = only ? NOTEBOOK_ONLY : "";
  if (!only) return current;
  method.value = only.method;
  translate.checked = only.translate;
  scale.checked = only.scale;
  return { ...only };
}

const NOTEBOOK_ONLY =
  "a notebook output embeds one layout per head (PCA, keys centred, equal spread); " +
  "TensorBoard computes the others";

export function isPending(x: unknown): x is Pending {
  return typeof x === "object" && x !== null && (x as Pending).pending === true;
}
