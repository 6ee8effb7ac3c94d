// Comparing the step shown with a reference (another step, or another run at the same step): Δ = current −
// reference. Line views draw Δ as 2·H pseudo-heads, the positive parts (more attention now, orange) then the
// negative parts (less, purple): PuOr's ends, colour-blind safe and the same as the diff heatmaps.

import type { Attention, Manifest } from "./api";
import type { CompareRef, SharedState, ViewHost } from "../shell/view";
import { headIndex, layerIndex } from "./labels";

export const MORE = "#e08214";
export const LESS = "#8073ac";

/** Why two manifests cannot be compared, or null when they can. */
export function mismatch(a: Manifest, b: Manifest): string | null {
  const sa = [a.num_layers, a.num_heads, a.query_len, a.key_len];
  const sb = [b.num_layers, b.num_heads, b.query_len, b.key_len];
  if (sa.join() !== sb.join()) return `cannot compare: shapes differ ([L, H, Q, K] ${sa.join("×")} vs ${sb.join("×")})`;
  // Same shape but other layers or heads of the model (layers=[0, -1] vs [0, 1]): head h is not the same head.
  const names = (m: Manifest): string =>
    JSON.stringify(
      Array.from({ length: m.num_layers }, (_, l) => [
        layerIndex(m, l),
        Array.from({ length: m.num_heads }, (_, h) => headIndex(m, l, h)),
      ]),
    );
  if (names(a) !== names(b)) return "cannot compare: the probes logged different layers or heads of the model";
  return null;
}

/** The reference manifest, or a message saying why there is no comparison (null: comparison off). */
export async function compareTarget(
  host: ViewHost,
  state: SharedState,
): Promise<{ ref: CompareRef; m: Manifest } | string | null> {
  const ref = state.compare;
  if (!ref) return state.compareNote || null;
  const m = await host.manifest(ref.step, ref.probe).catch(() => null);
  if (!m) return `${ref.label} is not available`;
  return mismatch(state.manifest, m) ?? { ref, m };
}

/** Signed Δ split into [2H, Q, K]: heads 0..H-1 hold max(Δ, 0), heads H..2H-1 hold max(−Δ, 0). */
export function splitDelta(cur: Attention, ref: Attention): Attention {
  const n = cur.H * cur.Q * cur.K;
  const out = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) {
    const d = (cur.weights[i] as number) - (ref.weights[i] as number);
    if (d > 0) out[i] = d;
    else out[n + i] = -d;
  }
  return { H: 2 * cur.H, Q: cur.Q, K: cur.K, weights: out };
}

export function deltaSummary(state: SharedState, ref: CompareRef): string {
  return `Δ = step ${state.step} − ${ref.label}: orange = more attention now, purple = less`;
}
