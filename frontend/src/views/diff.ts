// Diff view: the current (probe, step) against a reference: another step of the same probe, or another run/probe
// at the same step. A signed heatmap of Δattention = current − reference (PuOr diverging map, colour-blind safe)
// for one head, and a ranking of every layer × head by how much it changed (mean over queries of the total
// variation distance ½·Σ_k |Δ|, 0 = identical rows, 1 = disjoint). Click a ranking row to show that head.

import type { Attention } from "../api";
import type { Scale } from "../colormap";
import { mismatch } from "../compare";
import { headAndScaleControls, setHeadOptions } from "../controls";
import { HeatmapPanel } from "../heatmap";
import type { ProbeRef, SharedState, View, ViewHost } from "../view";
import { checkShape } from "./head";

const RANK_ROWS = 12;

export function totalVariation(a: Float32Array, b: Float32Array, h: number, Q: number, K: number): number {
  let sum = 0;
  const off = h * Q * K;
  for (let i = 0; i < Q * K; i++) sum += Math.abs((a[off + i] as number) - (b[off + i] as number));
  return sum / (2 * Q);
}

export class DiffView implements View {
  readonly id = "diff";
  readonly label = "Diff";
  readonly root = document.createElement("div");
  private readonly panel = new HeatmapPanel("diff");
  private readonly head: HTMLSelectElement;
  private readonly scale: HTMLSelectElement;
  private readonly note = document.createElement("div");
  private readonly rank = document.createElement("table");
  private readonly content = document.createElement("div");
  private host: ViewHost | null = null;

  constructor() {
    const bar = document.createElement("div");
    bar.className = "tba-viewbar";
    const { head, scale, headLabel, scaleLabel } = headAndScaleControls("diff", "√ |Δ|", () => this.host?.select({}));
    this.head = head;
    this.scale = scale;
    const hint = document.createElement("span");
    hint.className = "nv-info";
    hint.textContent = "Reference: “Compare with” in the toolbar (default: the previous logged step)";
    bar.append(headLabel, scaleLabel, hint);
    this.note.className = "tba-message";
    this.rank.className = "diff-rank";
    this.rank.id = "diff-ranking";
    this.rank.addEventListener("click", (e) => {
      const tr = (e.target as Element).closest<HTMLElement>("tr[data-layer]");
      if (!tr || !this.host) return;
      this.head.value = tr.dataset["head"] as string;
      this.host.select({ layer: Number(tr.dataset["layer"]) });
    });
    const side = document.createElement("div");
    side.className = "diff-side";
    const title = document.createElement("div");
    title.className = "hm-title";
    title.textContent = "Heads that changed most (mean total variation per query row)";
    side.append(title, this.rank);
    this.content.className = "diff-content";
    this.content.append(this.panel.root, side);
    this.root.append(bar, this.note, this.content);
  }

  /** The shared "Compare with" choice; when it is off, the previous logged step (or the next, at the first). */
  private resolve(state: SharedState): { probe: ProbeRef; step: number; label: string } | string {
    if (state.compare) return state.compare;
    if (state.compareNote) return `Nothing to compare: ${state.compareNote}.`;
    const step = state.steps[state.stepIndex - 1] ?? state.steps[state.stepIndex + 1];
    if (step === undefined) return "Only one step is logged: choose another run under “Compare with”.";
    return { probe: state.probe, step, label: `step ${step}` };
  }

  async show(host: ViewHost): Promise<void> {
    this.host = host;
    const state = host.state;
    const m = state.manifest;
    setHeadOptions(this.head, m.num_heads);
    const ref = this.resolve(state);
    if (typeof ref === "string") return this.message(ref);
    if (ref.probe === state.probe && ref.step === state.step) return this.message("The reference is the step shown: Δ = 0.");
    const refManifest = await host.manifest(ref.step, ref.probe).catch(() => null);
    if (!host.isCurrent(state)) return;
    if (!refManifest) return this.message(`${ref.label} is not available.`);
    const bad = mismatch(m, refManifest);
    if (bad) return this.message(`${bad[0]?.toUpperCase()}${bad.slice(1)}.`);
    const h = Number(this.head.value);
    const [a, b] = await Promise.all([
      host.attention(state.step, state.layer),
      host.attention(ref.step, state.layer, ref.probe),
    ]);
    if (!host.isCurrent(state)) return;
    const left = m.tokens;
    const right = m.key_tokens ?? m.tokens;
    checkShape(a, left.length, right.length);
    checkShape(b, left.length, right.length);
    const n = a.Q * a.K;
    const delta = new Float32Array(n);
    let vmax = 0;
    for (let i = 0; i < n; i++) {
      const d = (a.weights[h * n + i] as number) - (b.weights[h * n + i] as number);
      delta[i] = d;
      vmax = Math.max(vmax, Math.abs(d));
    }
    this.note.textContent = "";
    this.content.style.display = "";
    this.panel.set({
      values: delta,
      off: 0,
      Q: a.Q,
      K: a.K,
      left,
      right,
      signed: true,
      vmax,
      scale: this.scale.value as Scale,
      what: "Δ weight",
    });
    this.panel.paint();
    const tokensDiffer = JSON.stringify(refManifest.tokens) !== JSON.stringify(m.tokens);
    host.setSummary(
      `Δ = step ${state.step} − ${ref.label} · layer ${state.layer}, head ${h} · orange: more attention now, ` +
        `purple: less · colour range ±${vmax.toPrecision(3)}` + (tokensDiffer ? " · NOTE: the tokens differ" : ""),
    );
    await this.ranking(host, state, ref, a);
  }

  private async ranking(host: ViewHost, state: SharedState, ref: { probe: ProbeRef; step: number }, cur: Attention): Promise<void> {
    const L = state.manifest.num_layers;
    const rows: { layer: number; head: number; tv: number }[] = [];
    await Promise.all(
      Array.from({ length: L }, async (_, l) => {
        const [a, b] = await Promise.all([
          l === state.layer ? cur : host.attention(state.step, l),
          host.attention(ref.step, l, ref.probe),
        ]);
        if (!host.isCurrent(state) || a.H !== b.H || a.Q !== b.Q || a.K !== b.K) return;
        for (let h = 0; h < a.H; h++) rows.push({ layer: l, head: h, tv: totalVariation(a.weights, b.weights, h, a.Q, a.K) });
      }),
    );
    if (!host.isCurrent(state)) return;
    rows.sort((x, y) => y.tv - x.tv);
    const head = document.createElement("tr");
    for (const t of ["#", "layer", "head", "change", ""]) {
      const th = document.createElement("th");
      th.textContent = t;
      head.appendChild(th);
    }
    const max = rows[0]?.tv || 1;
    const h = Number(this.head.value);
    this.rank.replaceChildren(
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
        const cells = [String(i + 1), String(r.layer), String(r.head), r.tv.toFixed(3)];
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

  private message(text: string): void {
    this.note.textContent = text;
    this.content.style.display = "none";
  }

  onKey(e: KeyboardEvent): boolean {
    if (e.key === "Escape") return this.panel.resetZoom();
    if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      const H = this.head.options.length;
      if (H === 0) return false;
      this.head.value = String((Number(this.head.value) + (e.key === "ArrowRight" ? 1 : H - 1)) % H);
      this.host?.select({});
      return true;
    }
    return false;
  }
}
