// The neuron view's data: a whole layer's q/k and weights, or, for a "qk" layer or a long probe (data/scale.ts), only
// the head shown (`qk?head=` and `attention?head=`): 32 heads × 4,096 tokens × d_head 128 is 64 MB of q alone.

import { HttpError, type Attention, type QK } from "../../data/api";
import { compareTarget } from "../../data/compare";
import { QK_LAYER_WEIGHTS, usesTopK } from "../../data/scale";
import { lodLoaders } from "../../shell/lodLoaders";
import type { CompareRef, SharedState, ViewHost } from "../../shell/view";
import { recomputeOf, type Recompute } from "./math";

export interface Ref {
  ref: CompareRef;
  qk: QK;
  attn: Attention;
  rc: Recompute;
}

/** Whether the view loads one head at a time for this layer. */
export function oneHead(state: SharedState): boolean {
  return usesTopK(state.manifest, state.layer);
}

/**
 * Whether one head's weights are loaded: the server rebuilds a "qk" head only up to 2^26 weights (413 above), and a
 * stored head that size is 256 MB of float32 in the page. Past it the view rebuilds the shown query's row from q/k.
 */
export function headWeightsOk(state: SharedState): boolean {
  return state.manifest.query_len * state.manifest.key_len <= QK_LAYER_WEIGHTS;
}

/**
 * The q/k and weights the view draws: head `head` alone ([1, …]) when `one`, else the whole layer; weights null
 * when one head is too large to load (headWeightsOk).
 */
export async function loadData(
  host: ViewHost,
  state: SharedState,
  one: boolean,
  head: number,
): Promise<[QK, Attention | null]> {
  const { step, layer } = state;
  if (!one) return Promise.all([host.qk(step, layer), host.attention(step, layer)]);
  const [qk, attn] = await Promise.all([
    lodLoaders.qkHead(state.probe, step, layer, head),
    headWeightsOk(state) ? host.attentionHead(step, layer, head) : null,
  ]);
  if (attn && (qk.Q !== attn.Q || qk.K !== attn.K)) {
    throw new Error(
      "the token subset (Special tokens, search filter) is not applied to one head's queries and keys at this " +
        "length: set Special tokens to show",
    );
  }
  return [qk, attn];
}

/** The reference's q/k and attention, a reason why there is none (string), or null when comparison is off. */
export async function loadRef(host: ViewHost, state: SharedState): Promise<Ref | string | null> {
  try {
    const t = await compareTarget(host, state);
    if (t === null || typeof t === "string") return t;
    if (!t.m.has_qk) return `queries and keys were not logged for ${t.ref.label}`;
    const [qk, attn] = await Promise.all([
      host.qk(t.ref.step, state.layer, t.ref.probe),
      host.attention(t.ref.step, state.layer, t.ref.probe),
    ]);
    return { ref: t.ref, qk, attn, rc: recomputeOf(t.m, state.layer, qk.D) };
  } catch (e) {
    const ref = state.compare?.label ?? "the reference";
    if (e instanceof HttpError && e.status === 404) return `queries and keys were not logged for ${ref}`;
    return `${ref}: ${e instanceof Error ? e.message : String(e)}`;
  }
}
