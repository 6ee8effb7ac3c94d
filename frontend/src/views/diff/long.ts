// The diff view of a long probe or a "qk" layer (issue 12): whole layers are never loaded, so the ranking of every
// head comes from the server's head_diff route (Jensen–Shannon divergence over a documented sample of 64 query
// rows, docs/http_api.md), one request whatever the model's size.

import { fetchJsd } from "../evolution/api";
import type { ProbeRef, SharedState, ViewHost } from "../../shell/view";
import type { Ranking } from "./ranking";

/** The server serves one head whole up to this many weights (docs/http_api.md, `attention` with `head`). */
export const ONE_HEAD_WEIGHTS = 2 ** 26;

export async function rankLong(
  host: ViewHost,
  state: SharedState,
  ref: { probe: ProbeRef; step: number },
  rank: Ranking,
  currentHead: () => number,
): Promise<void> {
  const { probe, step, manifest: m } = state;
  rank.showRows(state, [], "Ranking every head (the server compares sampled rows of both steps)…", currentHead);
  let jsd: Float32Array;
  try {
    jsd = await fetchJsd(probe.run, probe.tag, step, ref.probe.run, ref.probe.tag, ref.step);
  } catch (e) {
    if (host.isCurrent(state)) rank.showRows(state, [], `No ranking: ${(e as Error).message}`, currentHead);
    return;
  }
  if (!host.isCurrent(state)) return;
  const rows = [];
  for (let l = 0; l < m.num_layers; l++)
    for (let h = 0; h < m.num_heads; h++) rows.push({ layer: l, head: h, tv: jsd[l * m.num_heads + h] as number });
  rank.showRows(
    state,
    rows,
    "Heads that changed most (Jensen–Shannon divergence in bits, sampled query rows)",
    currentHead,
  );
}
