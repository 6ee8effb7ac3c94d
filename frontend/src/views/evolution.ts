// Evolution view: how heads form over training. A layer × head grid coloured by a chosen metric at the current
// step; per-head time series (small multiples) over every logged step with the shared step cursor; "what changed"
// (heads ranked by the change of a metric, or by the Jensen–Shannon distance of their attention, between the
// current step and another step or run); and attention rollout at the current step (an approximation).
// Click a grid cell or a ranking row to open that layer in the head view at the current step; click a time series
// to move the shared step cursor. Metric definitions: docs/metrics.md.

import { VIRIDIS, cssColor } from "../colormap";
import { selectControl } from "../controls";
import type { ProbeRef, SharedState, View, ViewHost } from "../view";
import {
  fetchJsd,
  fetchMetrics,
  fetchRollout,
  METRICS,
  stepIndexAtOrBefore,
  type MetricSeries,
  type Rollout,
} from "./evolutionApi";

declare global {
  interface Window {
    /** Timings of the last evolution paint (ms): metrics load (0 when cached) and drawing. */
    __tbaEvolution?: { loadMs: number; drawMs: number; series: number; steps: number };
  }
}

const RANK_ROWS = 12;
const CSS = `
.evo-view { display: flex; flex-direction: column; gap: 14px; }
.evo-row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.evo-panel h3 { font-size: 13px; font-weight: 600; margin: 0 0 6px; color: #333; }
.evo-panel .evo-note { font-size: 12px; color: #666; margin-top: 4px; max-width: 520px; }
.evo-grid, .evo-series, .evo-rollout { cursor: pointer; display: block; }
.evo-rank { border-collapse: collapse; font-size: 12px; font-variant-numeric: tabular-nums; }
.evo-rank td, .evo-rank th { padding: 2px 8px; text-align: right; }
.evo-rank tbody tr { cursor: pointer; }
.evo-rank tbody tr:hover { background: #eef3fb; }
.evo-residual { width: 4.5em; }
`;

let styled = false;

function addStyle(): void {
  if (styled) return;
  styled = true;
  const s = document.createElement("style");
  s.textContent = CSS;
  document.head.appendChild(s);
}

function panel(title: string, ...children: HTMLElement[]): [HTMLDivElement, HTMLHeadingElement] {
  const d = document.createElement("div");
  d.className = "evo-panel";
  const h = document.createElement("h3");
  h.textContent = title;
  d.append(h, ...children);
  return [d, h];
}

function canvas(cls: string, id: string): HTMLCanvasElement {
  const c = document.createElement("canvas");
  c.className = cls;
  c.id = id;
  return c;
}

function sizeCanvas(c: HTMLCanvasElement, w: number, h: number): CanvasRenderingContext2D | null {
  const dpr = window.devicePixelRatio || 1;
  c.style.width = `${w}px`;
  c.style.height = `${h}px`;
  c.width = Math.round(w * dpr);
  c.height = Math.round(h * dpr);
  const ctx = c.getContext("2d");
  ctx?.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return "—";
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(3);
}

interface Range {
  lo: number;
  hi: number;
}

export class EvolutionView implements View {
  readonly id = "evolution";
  readonly label = "Evolution";
  readonly root = document.createElement("div");
  private readonly metricSelect: HTMLSelectElement;
  private readonly compareSelect: HTMLSelectElement;
  private readonly refSelect: HTMLSelectElement;
  private readonly fusionSelect: HTMLSelectElement;
  private readonly residual = document.createElement("input");
  private readonly message = document.createElement("div");
  private readonly grid = canvas("evo-grid", "evo-grid");
  private readonly gridTitle: HTMLHeadingElement;
  private readonly legend = document.createElement("div");
  private readonly series = canvas("evo-series", "evo-series");
  private readonly seriesTitle: HTMLHeadingElement;
  private readonly rank = document.createElement("table");
  private readonly rankTitle: HTMLHeadingElement;
  private readonly rankNote = document.createElement("div");
  private readonly rollout = canvas("evo-rollout", "evo-rollout");
  private readonly rolloutTitle: HTMLHeadingElement;
  private readonly rolloutNote = document.createElement("div");
  private readonly content = document.createElement("div");
  private readonly cache = new Map<string, Promise<MetricSeries | null>>();
  private readonly rolloutCache = new Map<string, Promise<Rollout>>();
  private readonly stepsCache = new Map<string, Promise<number[]>>();
  private host: ViewHost | null = null;
  private state: SharedState | null = null;
  private metrics: MetricSeries | null = null;
  private metric = "induction";
  private hover: { layer: number; head: number } | null = null;
  private gridGeom = { x0: 0, y0: 0, cell: 0 };
  private seriesGeom = { x0: 0, y0: 0, w: 0, h: 0, gap: 0, lo: 0, hi: 1 };

  constructor() {
    addStyle();
    this.root.className = "evo-view";
    const bar = document.createElement("div");
    bar.className = "tba-viewbar";
    const [metricLabel, metricSelect] = selectControl(
      "evo-metric",
      "Metric",
      METRICS.map((m) => [m.name, m.label]),
    );
    const [compareLabel, compareSelect] = selectControl("evo-compare", "Rank heads by", [
      ["metric", "change of the metric"],
      ["jsd", "attention distance (Jensen–Shannon)"],
    ]);
    const [refLabel, refSelect] = selectControl("evo-ref", "between this step and", []);
    const [fusionLabel, fusionSelect] = selectControl("evo-fusion", "Rollout heads", [
      ["mean", "mean"],
      ["max", "max"],
      ["min", "min"],
    ]);
    this.metricSelect = metricSelect;
    this.compareSelect = compareSelect;
    this.refSelect = refSelect;
    this.fusionSelect = fusionSelect;
    this.residual.type = "number";
    this.residual.id = "evo-residual";
    this.residual.className = "evo-residual";
    this.residual.min = "0";
    this.residual.max = "1";
    this.residual.step = "0.1";
    this.residual.value = "0.5";
    const resLabel = document.createElement("label");
    resLabel.className = "control";
    const resSpan = document.createElement("span");
    resSpan.textContent = "residual weight";
    resLabel.append(resSpan, this.residual);
    bar.append(metricLabel, compareLabel, refLabel, fusionLabel, resLabel);
    for (const el of [metricSelect, compareSelect, refSelect, fusionSelect, this.residual]) {
      el.addEventListener("change", () => {
        if (el === metricSelect) this.metric = metricSelect.value;
        this.host?.select({});
      });
    }

    this.message.className = "tba-message";
    this.legend.className = "evo-note";
    this.rank.className = "evo-rank";
    this.rank.id = "evo-rank";
    this.rankNote.className = "evo-note";
    this.rolloutNote.className = "evo-note";
    const [gridPanel, gridTitle] = panel("", this.grid, this.legend);
    const [seriesPanel, seriesTitle] = panel("", this.series);
    const [rankPanel, rankTitle] = panel("What changed", this.rank, this.rankNote);
    const [rolloutPanel, rolloutTitle] = panel("", this.rollout, this.rolloutNote);
    this.gridTitle = gridTitle;
    this.seriesTitle = seriesTitle;
    this.rankTitle = rankTitle;
    this.rolloutTitle = rolloutTitle;
    const top = document.createElement("div");
    top.className = "evo-row";
    top.append(gridPanel, rankPanel, rolloutPanel);
    this.content.className = "evo-view";
    this.content.append(top, seriesPanel);
    this.root.append(bar, this.message, this.content);

    this.grid.addEventListener("mousemove", (e) => this.onGridMove(e));
    this.grid.addEventListener("mouseleave", () => this.setHover(null));
    this.grid.addEventListener("click", (e) => {
      const cell = this.gridCell(e);
      if (cell) this.openHead(cell.layer, cell.head);
    });
    this.series.addEventListener("mousemove", (e) => this.onSeriesMove(e));
    this.series.addEventListener("mouseleave", () => this.setHover(null));
    this.series.addEventListener("click", (e) => this.onSeriesClick(e));
    this.rank.addEventListener("click", (e) => {
      const tr = (e.target as Element).closest<HTMLElement>("tr[data-layer]");
      if (tr) this.openHead(Number(tr.dataset["layer"]), Number(tr.dataset["head"]));
    });
  }

  /** Opens the head view at `layer` (same step) with `head` soloed, through the head view's own double-click. */
  private openHead(layer: number, head: number): void {
    if (!this.host) return;
    this.host.select({ view: "head", layer });
    const deadline = performance.now() + 5000;
    const solo = (): void => {
      const b = document.body.dataset;
      if (b["view"] !== "head") return; // the user moved on
      if (b["state"] === "ready" && b["paintedView"] === "head" && b["paintedLayer"] === String(layer)) {
        const boxes = Array.from(document.querySelectorAll<HTMLElement>(".head-toggle"));
        const box = boxes.find((el) => el.dataset["head"] === String(head));
        if (!box) return;
        const already = boxes.every((el) => el.classList.contains("off") === (el !== box));
        if (!already) box.dispatchEvent(new MouseEvent("dblclick", { bubbles: true }));
        return;
      }
      if (performance.now() < deadline) setTimeout(solo, 50);
    };
    setTimeout(solo, 0);
  }

  // -- data ------------------------------------------------------------------------------------------------
  private loadMetrics(probe: ProbeRef, state: SharedState): Promise<MetricSeries | null> {
    // Keyed on the probe's logged steps too, so Reload (new steps) fetches again.
    const key = `${probe.run}\u0000${probe.tag}\u0000${state.steps.length}\u0000${state.steps[state.steps.length - 1]}`;
    let p = this.cache.get(key);
    if (!p) {
      p = fetchMetrics(probe.run, probe.tag);
      p.catch(() => this.cache.delete(key));
      this.cache.set(key, p);
      while (this.cache.size > 8) this.cache.delete(this.cache.keys().next().value as string);
    }
    return p;
  }

  private otherProbes(state: SharedState): ProbeRef[] {
    return state.probes.filter((p) => p.tag === state.probe.tag && p.run !== state.probe.run);
  }

  private syncRefOptions(state: SharedState): void {
    const keep = this.refSelect.value;
    const opts: [string, string][] = [["prev", "the previous logged step"]];
    for (const s of state.steps) opts.push([`step:${s}`, `step ${s}`]);
    for (const p of this.otherProbes(state)) opts.push([`run:${p.run}`, `run ${p.run} (same step)`]);
    const sig = opts.map((o) => o[0]).join("|");
    if (this.refSelect.dataset["sig"] !== sig) {
      this.refSelect.replaceChildren(
        ...opts.map(([v, t]) => {
          const o = document.createElement("option");
          o.value = v;
          o.textContent = t;
          return o;
        }),
      );
      this.refSelect.dataset["sig"] = sig;
      this.refSelect.value = opts.some((o) => o[0] === keep) ? keep : `step:${state.steps[0]}`;
    }
  }

  // -- show ------------------------------------------------------------------------------------------------
  async show(host: ViewHost): Promise<void> {
    this.host = host;
    const state = host.state;
    const t0 = performance.now();
    const metrics = await this.loadMetrics(state.probe, state);
    if (!host.isCurrent(state)) return;
    const loadMs = performance.now() - t0; // ~0 when cached
    this.state = state;
    this.metrics = metrics;
    if (!metrics || metrics.steps.length === 0) {
      this.content.style.display = "none";
      this.message.textContent =
        "No per-head metrics for this probe. Log them with AttentionWriter.add_metrics (every step) or " +
        "add_attention, or with the Trainer/Lightning callback (docs/metrics.md).";
      host.setSummary("Evolution: no metrics");
      return;
    }
    this.message.textContent = "";
    this.content.style.display = "";
    if (!metrics.data.has(this.metric)) this.metric = metrics.names[0] as string;
    this.metricSelect.value = this.metric;
    this.syncRefOptions(state);
    const t1 = performance.now();
    this.drawGrid();
    this.drawSeries();
    const drawMs = performance.now() - t1;
    window.__tbaEvolution = { loadMs, drawMs, series: metrics.L * metrics.H, steps: metrics.steps.length };
    this.root.dataset["drawMs"] = drawMs.toFixed(1);
    host.setSummary(
      `${metrics.L} layers × ${metrics.H} heads · metrics at ${metrics.steps.length} steps ` +
        `(${metrics.steps[0]}–${metrics.steps[metrics.steps.length - 1]}) · click a head to open it in the head view, ` +
        "a time series to move the step",
    );
    await Promise.all([this.showRank(host, state), this.showRollout(host, state)]);
  }

  private values(name = this.metric): Float32Array {
    return (this.metrics as MetricSeries).data.get(name) as Float32Array;
  }

  private range(name = this.metric): Range {
    const info = METRICS.find((m) => m.name === name);
    if (info?.range) return { lo: info.range[0], hi: info.range[1] };
    const v = this.values(name);
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < v.length; i++) {
      const x = v[i] as number;
      if (x < lo) lo = x;
      if (x > hi) hi = x;
    }
    if (!Number.isFinite(lo)) return { lo: 0, hi: 1 };
    if (hi - lo < 1e-9) hi = lo + 1;
    return { lo: Math.min(0, lo), hi };
  }

  private currentIndex(): number {
    const m = this.metrics as MetricSeries;
    return Math.max(0, stepIndexAtOrBefore(m.steps, (this.state as SharedState).step));
  }

  private metricLabel(name = this.metric): string {
    return METRICS.find((m) => m.name === name)?.label ?? name;
  }

  // -- grid ------------------------------------------------------------------------------------------------
  private drawGrid(): void {
    const m = this.metrics as MetricSeries;
    const { L, H } = m;
    const cell = Math.max(14, Math.min(34, Math.floor(420 / Math.max(H, 1))));
    const x0 = 34;
    const y0 = 18;
    const ctx = sizeCanvas(this.grid, x0 + H * cell + 4, y0 + L * cell + 4);
    this.gridGeom = { x0, y0, cell };
    const s = this.currentIndex();
    const step = m.steps[s] as number;
    this.gridTitle.textContent = `${this.metricLabel()} at step ${step}`;
    const { lo, hi } = this.range();
    this.legend.textContent = `colour: ${fmt(lo)} (dark) … ${fmt(hi)} (yellow); grey = undefined`;
    if (!ctx) return;
    const v = this.values();
    ctx.font = "10px sans-serif";
    ctx.fillStyle = "#555";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (let l = 0; l < L; l++) ctx.fillText(`L${l}`, x0 - 4, y0 + l * cell + cell / 2);
    ctx.textAlign = "center";
    const every = Math.ceil(12 / cell);
    for (let h = 0; h < H; h += every) ctx.fillText(`${h}`, x0 + h * cell + cell / 2, y0 - 8);
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < H; h++) {
        const x = v[(s * L + l) * H + h] as number;
        ctx.fillStyle = Number.isFinite(x) ? cssColor(VIRIDIS, ((x - lo) / (hi - lo)) * 255) : "#ddd";
        ctx.fillRect(x0 + h * cell, y0 + l * cell, cell - 1, cell - 1);
      }
    }
    if (this.hover) {
      ctx.strokeStyle = "#e53935";
      ctx.lineWidth = 2;
      ctx.strokeRect(x0 + this.hover.head * cell - 1, y0 + this.hover.layer * cell - 1, cell + 1, cell + 1);
    }
  }

  private gridCell(e: MouseEvent): { layer: number; head: number } | null {
    const m = this.metrics;
    if (!m) return null;
    const r = this.grid.getBoundingClientRect();
    const { x0, y0, cell } = this.gridGeom;
    const head = Math.floor((e.clientX - r.left - x0) / cell);
    const layer = Math.floor((e.clientY - r.top - y0) / cell);
    return layer >= 0 && layer < m.L && head >= 0 && head < m.H ? { layer, head } : null;
  }

  private onGridMove(e: MouseEvent): void {
    const c = this.gridCell(e);
    this.setHover(c);
    if (c && this.metrics) {
      const s = this.currentIndex();
      const x = this.values()[(s * this.metrics.L + c.layer) * this.metrics.H + c.head] as number;
      this.grid.title = `Layer ${c.layer}, head ${c.head}: ${this.metricLabel()} = ${fmt(x)} · click to open this head in the head view`;
    }
  }

  private setHover(c: { layer: number; head: number } | null): void {
    const same = c === this.hover || (c && this.hover && c.layer === this.hover.layer && c.head === this.hover.head);
    if (same) return;
    this.hover = c;
    if (this.metrics) {
      this.drawGrid();
      this.drawSeries();
    }
  }

  // -- small multiples -------------------------------------------------------------------------------------
  private drawSeries(): void {
    const m = this.metrics as MetricSeries;
    const { L, H, steps } = m;
    const avail = Math.max(480, Math.min(1400, (window.innerWidth || 1280) - 60));
    const x0 = 34;
    const gap = 4;
    const w = Math.max(36, Math.floor((avail - x0) / H) - gap);
    const h = Math.max(28, Math.min(64, Math.round(w * 0.6)));
    const y0 = 16;
    const ctx = sizeCanvas(this.series, x0 + H * (w + gap), y0 + L * (h + gap));
    const { lo, hi } = this.range();
    this.seriesGeom = { x0, y0, w, h, gap, lo, hi };
    this.seriesTitle.textContent =
      `${this.metricLabel()} over ${steps.length} steps (${fmt(lo)}–${fmt(hi)} per plot; red line = current step)`;
    if (!ctx) return;
    const v = this.values();
    const S = steps.length;
    const first = steps[0] as number;
    const span = Math.max(1, (steps[S - 1] as number) - first);
    const xs = new Float32Array(S);
    for (let i = 0; i < S; i++) xs[i] = (((steps[i] as number) - first) / span) * (w - 2) + 1;
    ctx.font = "10px sans-serif";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    ctx.fillStyle = "#555";
    for (let l = 0; l < L; l++) ctx.fillText(`L${l}`, x0 - 4, y0 + l * (h + gap) + h / 2);
    ctx.textAlign = "center";
    const every = Math.ceil(24 / (w + gap));
    for (let hd = 0; hd < H; hd += every) ctx.fillText(`H${hd}`, x0 + hd * (w + gap) + w / 2, y0 - 8);
    const scaleY = (h - 4) / (hi - lo);
    ctx.lineWidth = 1;
    for (let l = 0; l < L; l++) {
      for (let hd = 0; hd < H; hd++) {
        const ox = x0 + hd * (w + gap);
        const oy = y0 + l * (h + gap);
        const hovered = this.hover && this.hover.layer === l && this.hover.head === hd;
        ctx.fillStyle = hovered ? "#fff4e5" : "#f6f7f9";
        ctx.fillRect(ox, oy, w, h);
        ctx.strokeStyle = hovered ? "#e65100" : "#1f6fb2";
        ctx.beginPath();
        let pen = false;
        for (let i = 0; i < S; i++) {
          const x = v[(i * L + l) * H + hd] as number;
          if (!Number.isFinite(x)) {
            pen = false;
            continue;
          }
          const px = ox + (xs[i] as number);
          const py = oy + h - 2 - (Math.min(hi, Math.max(lo, x)) - lo) * scaleY;
          if (pen) ctx.lineTo(px, py);
          else ctx.moveTo(px, py);
          pen = true;
        }
        ctx.stroke();
      }
    }
    // The shared step cursor.
    const cur = (this.state as SharedState).step;
    const cx = ((cur - first) / span) * (w - 2) + 1;
    ctx.strokeStyle = "rgba(229,57,53,0.8)";
    ctx.beginPath();
    for (let hd = 0; hd < H; hd++) {
      const px = x0 + hd * (w + gap) + cx;
      ctx.moveTo(px, y0);
      ctx.lineTo(px, y0 + L * (h + gap) - gap);
    }
    ctx.stroke();
  }

  private seriesCell(e: MouseEvent): { layer: number; head: number; t: number } | null {
    const m = this.metrics;
    if (!m) return null;
    const r = this.series.getBoundingClientRect();
    const { x0, y0, w, h, gap } = this.seriesGeom;
    const x = e.clientX - r.left - x0;
    const y = e.clientY - r.top - y0;
    const head = Math.floor(x / (w + gap));
    const layer = Math.floor(y / (h + gap));
    if (layer < 0 || layer >= m.L || head < 0 || head >= m.H) return null;
    return { layer, head, t: Math.min(1, Math.max(0, (x - head * (w + gap) - 1) / (w - 2))) };
  }

  private onSeriesMove(e: MouseEvent): void {
    const c = this.seriesCell(e);
    this.setHover(c ? { layer: c.layer, head: c.head } : null);
    if (c && this.metrics) {
      const steps = this.metrics.steps;
      const step = (steps[0] as number) + c.t * ((steps[steps.length - 1] as number) - (steps[0] as number));
      const i = Math.max(0, stepIndexAtOrBefore(steps, step));
      const x = this.values()[(i * this.metrics.L + c.layer) * this.metrics.H + c.head] as number;
      this.series.title = `Layer ${c.layer}, head ${c.head}, step ${steps[i]}: ${this.metricLabel()} = ${fmt(x)} · click to move the step`;
    }
  }

  private onSeriesClick(e: MouseEvent): void {
    const c = this.seriesCell(e);
    const state = this.state;
    if (!c || !state || !this.metrics || !this.host) return;
    const steps = this.metrics.steps;
    const target = (steps[0] as number) + c.t * ((steps[steps.length - 1] as number) - (steps[0] as number));
    // The shared cursor moves over the steps with full attention logged: take the nearest of those.
    let best = state.steps[0] as number;
    for (const s of state.steps) if (Math.abs(s - target) < Math.abs(best - target)) best = s;
    this.host.select({ step: best });
  }

  // -- what changed ----------------------------------------------------------------------------------------
  private probeSteps(probe: ProbeRef): Promise<number[]> {
    const key = `${probe.run}\u0000${probe.tag}`;
    let p = this.stepsCache.get(key);
    if (!p) {
      const query = new URLSearchParams({ run: probe.run, tag: probe.tag }).toString();
      p = fetch(`steps?${query}`).then(async (r) => (r.ok ? ((await r.json()) as { steps: number[] }).steps : []));
      p.catch(() => this.stepsCache.delete(key));
      this.stepsCache.set(key, p);
    }
    return p;
  }

  private async showRank(host: ViewHost, state: SharedState): Promise<void> {
    const m = this.metrics as MetricSeries;
    const ref = this.refSelect.value || "prev";
    let refProbe: ProbeRef = state.probe;
    let refStep = state.step;
    if (ref === "prev") refStep = state.steps[Math.max(0, state.stepIndex - 1)] as number;
    else if (ref.startsWith("step:")) refStep = Number(ref.slice(5));
    else if (ref.startsWith("run:")) refProbe = { run: ref.slice(4), tag: state.probe.tag };
    if (refProbe.run !== state.probe.run && this.compareSelect.value === "jsd") {
      // Attention exists only at that run's logged probe steps: take its last one at or before this step.
      const steps = await this.probeSteps(refProbe);
      if (!host.isCurrent(state)) return;
      const at = steps.filter((s) => s <= state.step);
      refStep = at.length ? (at[at.length - 1] as number) : -1;
    }
    const where =
      refProbe.run !== state.probe.run ? `run ${refProbe.run} at step ${refStep}` : `step ${refStep}`;
    const { L, H } = m;
    let scores: Float64Array;
    let detail: (i: number) => string;
    try {
      if (this.compareSelect.value === "jsd") {
        if (refStep < 0) throw new Error(`run ${refProbe.run} has no attention logged at or before step ${state.step}`);
        const jsd = await fetchJsd(state.probe.run, state.probe.tag, state.step, refProbe.run, refProbe.tag, refStep);
        if (!host.isCurrent(state)) return;
        scores = Float64Array.from(jsd);
        detail = (i) => `${fmt(jsd[i] as number)} bits`;
        this.rankTitle.textContent = `What changed: attention distance, step ${state.step} vs ${where}`;
        this.rankNote.textContent =
          "Jensen–Shannon divergence between each head's attention rows at the two steps (bits: 0 = same, 1 = disjoint).";
      } else {
        const other = refProbe.run === state.probe.run ? m : await this.loadMetrics(refProbe, state);
        if (!host.isCurrent(state)) return;
        if (!other || other.L !== L || other.H !== H || !other.data.has(this.metric)) {
          throw new Error(`${where} has no comparable ${this.metricLabel()} series`);
        }
        const a = this.values();
        const b = other.data.get(this.metric) as Float32Array;
        const ia = this.currentIndex();
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
        this.rankTitle.textContent = `What changed: ${this.metricLabel()}, step ${state.step} vs ${where}`;
        this.rankNote.textContent = "Heads ranked by the absolute change of the metric. Click a row to open it.";
      }
    } catch (e) {
      if (!host.isCurrent(state)) return;
      this.rank.replaceChildren();
      this.rankTitle.textContent = "What changed";
      this.rankNote.textContent = `Cannot compare: ${(e as Error).message}`;
      return;
    }
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
      for (const t of [String(r + 1), String(Math.floor(i / H)), String(i % H), detail(i)]) {
        const td = document.createElement("td");
        td.textContent = t;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    });
    this.rank.replaceChildren(head, body);
  }

  // -- rollout ---------------------------------------------------------------------------------------------
  private async showRollout(host: ViewHost, state: SharedState): Promise<void> {
    const fusion = this.fusionSelect.value || "mean";
    let residual = Number(this.residual.value);
    if (!Number.isFinite(residual) || residual < 0 || residual > 1) residual = 0.5;
    const man = state.manifest;
    this.rolloutTitle.textContent = `Attention rollout after layer ${state.layer} (approximation)`;
    if (man.key_tokens) {
      sizeCanvas(this.rollout, 1, 1);
      this.rolloutNote.textContent = "Rollout needs self-attention; this probe is cross-attention.";
      return;
    }
    const key = `${state.probe.run}\u0000${state.probe.tag}\u0000${state.step}\u0000${fusion}\u0000${residual}`;
    let p = this.rolloutCache.get(key);
    if (!p) {
      p = fetchRollout(state.probe.run, state.probe.tag, state.step, fusion, residual);
      p.catch(() => this.rolloutCache.delete(key));
      this.rolloutCache.set(key, p);
      while (this.rolloutCache.size > 16) this.rolloutCache.delete(this.rolloutCache.keys().next().value as string);
    }
    let r: Rollout;
    try {
      r = await p;
    } catch (e) {
      if (!host.isCurrent(state)) return;
      this.rolloutNote.textContent = `Rollout unavailable: ${(e as Error).message}`;
      return;
    }
    if (!host.isCurrent(state)) return;
    const layer = Math.min(state.layer, r.L - 1);
    const T = r.T;
    const cell = Math.max(3, Math.min(14, Math.floor(300 / T)));
    const lab = 64;
    const ctx = sizeCanvas(this.rollout, lab + T * cell + 2, T * cell + lab);
    this.rolloutNote.textContent =
      `Abnar & Zuidema (2020): heads fused by ${fusion}, Â = ${residual}·I + ${(1 - residual).toFixed(2)}·A, ` +
      "multiplied through the layers. Row = position, column = input token it draws from. It ignores values, " +
      "MLPs and norms: an approximation, not an attribution.";
    if (!ctx) return;
    const base = layer * T * T;
    let mx = 0;
    for (let i = 0; i < T * T; i++) mx = Math.max(mx, r.data[base + i] as number);
    for (let i = 0; i < T; i++) {
      for (let j = 0; j < T; j++) {
        const x = (r.data[base + i * T + j] as number) / (mx || 1);
        ctx.fillStyle = cssColor(VIRIDIS, Math.sqrt(x) * 255);
        ctx.fillRect(lab + j * cell, i * cell, cell, cell);
      }
    }
    // Token labels (canvas text: never HTML).
    if (cell >= 7) {
      ctx.font = `${Math.min(11, cell)}px sans-serif`;
      ctx.fillStyle = "#333";
      ctx.textBaseline = "middle";
      ctx.textAlign = "right";
      man.tokens.forEach((t, i) => ctx.fillText(t.slice(0, 9), lab - 3, i * cell + cell / 2));
      ctx.save();
      ctx.textAlign = "right";
      man.tokens.forEach((t, j) => {
        ctx.save();
        ctx.translate(lab + j * cell + cell / 2, T * cell + 3);
        ctx.rotate(-Math.PI / 2);
        ctx.fillText(t.slice(0, 9), 0, 0);
        ctx.restore();
      });
      ctx.restore();
    }
  }

  hide(): void {
    this.hover = null;
  }
}
