// The diff view's ranking: every layer × head by how much it changed against the reference, as the mean over
// query rows of the total variation distance ½·Σ_k |Δ| (0 = identical rows, 1 = disjoint). Clicking a row
// shows that head's Δ.

import type { Attention } from "../../data/api";
import type { ProbeRef, SharedState, ViewHost } from "../../shell/view";
import { headIndex, layerIndex } from "../../data/labels";

const RANK_ROWS = 12;

export function totalVariation(a: Float32Array, b: Float32Array, h: number, Q: number, K: number): number {
  let sum = 0;
  const off = h * Q * K;
  for (let i = 0; i < Q * K; i++) sum += Math.abs((a[off + i] as number) - (b[off + i] as number));
  return sum / (2 * Q);
}

export class Ranking {
  readonly el = document.createElement("div");
  private readonly table = document.createElement("table");
  private readonly title = document.createElement("div");

  constructor(onPick: (layer: number, head: number) => void) {
    this.table.className = "diff-rank";
    this.table.id = "diff-ranking";
    this.table.addEventListener("click", (e) => {
      const tr = (e.target as Element).closest<HTMLElement>("tr[data-layer]");
      if (tr) onPick(Number(tr.dataset["layer"]), Number(tr.dataset["head"]));
    });
    this.el.className = "diff-side";
    this.title.className = "hm-title";
    this.el.append(this.title, this.table);
  }

  /** Ranks every layer × head; `currentHead` (read once the layers are in) marks the head shown. */
  async show(
    host: ViewHost,
    state: SharedState,
    ref: { probe: ProbeRef; step: number },
    cur: Attention,
    currentHead: () => number,
  ): Promise<void> {
    const L = state.manifest.num_layers;
    const rows: { layer: number; head: number; tv: number }[] = [];
    await Promise.all(
      Array.from({ length: L }, async (_, l) => {
        const [a, b] = await Promise.all([
          l === state.layer ? cur : host.attention(state.step, l),
          host.attention(ref.step, l, ref.probe),
        ]);
        if (!host.isCurrent(state) || a.H !== b.H || a.Q !== b.Q || a.K !== b.K) return;
        for (let h = 0; h < a.H; h++)
          rows.push({ layer: l, head: h, tv: totalVariation(a.weights, b.weights, h, a.Q, a.K) });
      }),
    );
    if (!host.isCurrent(state)) return;
    this.showRows(state, rows, "Heads that changed most (mean total variation per query row)", currentHead);
  }

  /** Ranks given per-head scores (e.g. the server's Jensen–Shannon divergences of a long probe). */
  showRows(
    state: SharedState,
    rows: { layer: number; head: number; tv: number }[],
    title: string,
    currentHead: () => number,
  ): void {
    this.title.textContent = title;
    rows.sort((x, y) => y.tv - x.tv);
    const head = document.createElement("tr");
    for (const t of ["#", "layer", "head", "change", ""]) {
      const th = document.createElement("th");
      th.textContent = t;
      head.appendChild(th);
    }
    const max = rows[0]?.tv || 1;
    const h = currentHead();
    this.table.replaceChildren(
      head,
      ...rows.slice(0, RANK_ROWS).map((r, i) => {
        const tr = document.createElement("tr");
        tr.dataset["layer"] = String(r.layer);
        tr.dataset["head"] = String(r.head);
        tr.title = "click: show this head's Δ";
        if (r.layer === state.layer && r.head === h) tr.classList.add("current");
        const bar = document.createElement("div");
        bar.className = "diff-bar";
        bar.style.width = `${Math.round((r.tv / max) * 80)}px`;
        // The model's numbers (a logged subset is not renumbered); data-layer/data-head stay the stored ones.
        const m = state.manifest;
        const cells = [
          String(i + 1),
          String(layerIndex(m, r.layer)),
          String(headIndex(m, r.layer, r.head)),
          r.tv.toFixed(3),
        ];
        for (const c of cells) {
          const td = document.createElement("td");
          td.textContent = c;
          tr.appendChild(td);
        }
        const td = document.createElement("td");
        td.appendChild(bar);
        tr.appendChild(td);
        return tr;
      }),
    );
  }
}
