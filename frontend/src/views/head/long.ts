// The head tab beyond 512 query tokens, and for every "qk" layer: lines from the `topk` route (each query's
// strongest keys, computed on the server) drawn by the virtual head view (draw/headView/sparse.ts), never the whole
// layer. A "qk" layer without stored top-k answers per head only: then each head is asked for on its own.

import { HttpError } from "../../data/api";
import { layerLabel } from "../../data/labels";
import type { TopK } from "../../data/lod";
import { isQkLayer } from "../../data/scale";
import { SparseHeadView, type SparseData } from "../../draw/headView/sparse";
import { lodLoaders } from "../../shell/lodLoaders";
import type { SharedState, ViewHost } from "../../shell/view";

/** Every head's top-k of one layer, one request when the server has them together, else one per head. */
async function loadTopK(state: SharedState, H: number): Promise<TopK> {
  const { probe, step, layer } = state;
  try {
    return await lodLoaders.topk(probe, step, layer);
  } catch (e) {
    if (!(e instanceof HttpError) || e.status !== 400) throw e;
  }
  const parts = await Promise.all(Array.from({ length: H }, (_, h) => lodLoaders.topk(probe, step, layer, h)));
  const first = parts[0] as TopK;
  const n = first.Q * first.k;
  const keys = new Int32Array(H * n);
  const codes = new Uint8Array(H * n);
  parts.forEach((p, h) => {
    keys.set(p.keys.subarray(0, n), h * n);
    codes.set(p.codes.subarray(0, n), h * n);
  });
  return { H, Q: first.Q, k: first.k, keys, codes, source: first.source };
}

export class LongHead {
  readonly view = new SparseHeadView();
  private shownKey = "";

  /** Loads and paints the layer's top-k lines; resolves with the summary line (null: a newer state came). */
  async show(host: ViewHost, state: SharedState, active: boolean[]): Promise<string | null> {
    const raw = await lodLoaders.manifest(state.probe, state.step);
    if (!host.isCurrent(state)) return null;
    const H = raw.num_heads;
    const topk = await loadTopK(state, H);
    if (!host.isCurrent(state)) return null;
    const left = raw.tokens;
    const right = raw.key_tokens ?? raw.tokens;
    if (topk.Q !== left.length) throw new Error(`top-k has ${topk.Q} queries but the step has ${left.length} tokens`);
    const data: SparseData = { left, right, H: topk.H, Q: topk.Q, k: topk.k, keys: topk.keys, codes: topk.codes };
    this.view.setData(data, active);
    this.shownKey = JSON.stringify([state.probe, state.step, state.layer]);
    this.view.paint();
    const m = state.manifest;
    const notes: string[] = [];
    if (state.compare) notes.push("Compare with is not drawn at this length");
    if (m.kept && (m.kept.q || m.kept.k)) notes.push("the token subset is not applied at this length");
    if (m.segments) notes.push("the sentence filter is off at this length");
    return (
      (notes.length ? `(${notes.join("; ")}) · ` : "") +
      `${layerLabel(raw, state.layer)} · ${raw.num_layers} layers · ${H} heads · ` +
      `${left.length.toLocaleString("en-US")} tokens · top ${topk.k} keys per query from the server` +
      (isQkLayer(raw, state.layer) ? " (rebuilt from the stored queries and keys)" : "") +
      " · scroll for more tokens, hover a token to isolate its lines, click to lock it"
    );
  }

  /** What is drawn, for prefetching: the next steps' top-k of the same layer. */
  prefetch(state: SharedState, step: number): void {
    if (this.shownKey) lodLoaders.topk(state.probe, step, state.layer).catch(() => undefined);
  }
}
