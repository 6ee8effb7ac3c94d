// "What changed": heads ranked by how much they changed between the shared step and a reference (an earlier
// step, or another run at the same step), by the change of the chosen metric or by the Jensen–Shannon distance
// of their attention (route head_diff). Clicking a row opens that head.

import type { ProbeRef, SharedState, ViewHost } from "../../shell/view";
import { request } from "../../data/transport";
import { fetchJsd, stepIndexAtOrBefore, type MetricSeries } from "./api";
import { fmt, panel, type Shown } from "./layout";

const RANK_ROWS = 12;

export interface RankQuery {
  /** The reference choice: "prev", "step:<n>" or "run:<run>". */
  ref: string;
  /** Rank by the Jensen–Shannon divergence of the attention instead of by the metric's change. */
  byJsd: boolean;
  /** The metric as shown, and its name. */
  shown: Shown;
  metric: string;
  /** The metric series of another run's probe (cached by the view). */
  loadMetrics: (probe: ProbeRef, state: SharedState) => Promise<MetricSeries | null>;
}

export class RankPanel {
  readonly el: HTMLDivElement;
  private readonly table = document.createElement("table");
  private readonly title: HTMLHeadingElement;
  private readonly note = document.createElement("div");
  private readonly stepsCache = new Map<string, Promise<number[]>>();

  constructor(onOpen: (layer: number, head: number) => void) {
    this.table.className = "evo-rank";
    this.table.id = "evo-rank";
    this.note.className = "evo-note";
    [this.el, this.title] = panel("What changed", this.table, this.note);
    this.table.addEventListener("click", (e) => {
      const tr = (e.target as Element).closest<HTMLElement>("tr[data-layer]");
      if (tr) onOpen(Number(tr.dataset["layer"]), Number(tr.dataset["head"]));
    });
  }

  private probeSteps(probe: ProbeRef): Promise<number[]> {
    const key = `${probe.run}\u0000${probe.tag}`;
    let p = this.stepsCache.get(key);
    if (!p) {
      const query = new URLSearchParams({ run: probe.run, tag: probe.tag }).toString();
      p = request(`steps?${query}`).then(async (r) => (r.ok ? ((await r.json()) as { steps: number[] }).steps : []));
      p.catch(() => this.stepsCache.delete(key));
      this.stepsCache.set(key, p);
    }
    return p;
  }

  async show(host: ViewHost, state: SharedState, q: RankQuery): Promise<void> {
    const m = q.shown.m;
    const ref = q.ref;
    let refProbe: ProbeRef = state.probe;
    let refStep = state.step;
    if (ref === "prev") refStep = state.steps[Math.max(0, state.stepIndex - 1)] as number;
    else if (ref.startsWith("step:")) refStep = Number(ref.slice(5));
    else if (ref.startsWith("run:")) refProbe = { run: ref.slice(4), tag: state.probe.tag };
    if (refProbe.run !== state.probe.run && q.byJsd) {
      // Attention exists only at that run's logged probe steps: take its last one at or before this step.
      const steps = await this.probeSteps(refProbe);
      if (!host.isCurrent(state)) return;
      const at = steps.filter((s) => s <= state.step);
      refStep = at.length ? (at[at.length - 1] as number) : -1;
    }
    const where = refProbe.run !== state.probe.run ? `run ${refProbe.run} at step ${refStep}` : `step ${refStep}`;
    const { L, H } = m;
    let scores: Float64Array;
    let detail: (i: number) => string;
    try {
      if (q.byJsd) {
        if (refStep < 0) throw new Error(`run ${refProbe.run} has no attention logged at or before step ${state.step}`);
        const jsd = await fetchJsd(state.probe.run, state.probe.tag, state.step, refProbe.run, refProbe.tag, refStep);
        if (!host.isCurrent(state)) return;
        scores = Float64Array.from(jsd);
        detail = (i) => `${fmt(jsd[i] as number)} bits`;
        this.title.textContent = `What changed: Jensen–Shannon divergence, step ${state.step} vs ${where}`;
        this.note.textContent =
          "Jensen–Shannon divergence between each head's attention rows at the two steps (bits: 0 = same, 1 = disjoint).";
      } else {
        const other = refProbe.run === state.probe.run ? m : await q.loadMetrics(refProbe, state);
        if (!host.isCurrent(state)) return;
        if (!other || other.L !== L || other.H !== H || !other.data.has(q.metric)) {
          throw new Error(`${where} has no comparable ${q.shown.label} series`);
        }
        const a = q.shown.values;
        const b = other.data.get(q.metric) as Float32Array;
        const ia = q.shown.index;
        const ib = stepIndexAtOrBefore(other.steps, refStep);
        if (ib < 0) throw new Error(`no metrics at or before step ${refStep}`);
        scores = new Float64Array(L * H);
        const now = new Float64Array(L * H);
        const then = new Float64Array(L * H);
        for (let i = 0; i < L * H; i++) {
          now[i] = a[ia * L * H + i] as number;
          then[i] = b[ib * L * H + i] as number;
          scores[i] = Math.abs((now[i] as number) - (then[i] as number));
        }
        detail = (i) => {
          const d = (now[i] as number) - (then[i] as number);
          return `${d >= 0 ? "+" : ""}${fmt(d)} (${fmt(then[i] as number)} → ${fmt(now[i] as number)})`;
        };
        this.title.textContent = `What changed: ${q.shown.label}, step ${state.step} vs ${where}`;
        this.note.textContent = "Heads ranked by the absolute change of the metric. Click a row to open it.";
      }
    } catch (e) {
      if (!host.isCurrent(state)) return;
      this.table.replaceChildren();
      this.title.textContent = "What changed";
      this.note.textContent = `Cannot compare: ${(e as Error).message}`;
      return;
    }
    this.fill(scores, L, H, detail, q.shown);
  }

  /** The top rows by score (undefined scores dropped). */
  private fill(scores: Float64Array, L: number, H: number, detail: (i: number) => string, shown: Shown): void {
    const order = Array.from({ length: L * H }, (_, i) => i)
      .filter((i) => Number.isFinite(scores[i] as number))
      .sort((x, y) => (scores[y] as number) - (scores[x] as number))
      .slice(0, RANK_ROWS);
    const head = document.createElement("thead");
    const hr = document.createElement("tr");
    for (const t of ["#", "layer", "head", "change"]) {
      const th = document.createElement("th");
      th.textContent = t;
      hr.appendChild(th);
    }
    head.appendChild(hr);
    const body = document.createElement("tbody");
    order.forEach((i, r) => {
      const tr = document.createElement("tr");
      tr.dataset["layer"] = String(Math.floor(i / H));
      tr.dataset["head"] = String(i % H);
      tr.title = "Open this head in the head view";
      const l = Math.floor(i / H);
      const names = [String(shown.names.layer(l)), String(shown.names.head(l, i % H))];
      for (const t of [String(r + 1), ...names, detail(i)]) {
        const td = document.createElement("td");
        td.textContent = t;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    });
    this.table.replaceChildren(head, body);
  }
}
