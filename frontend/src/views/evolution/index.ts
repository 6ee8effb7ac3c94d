// Evolution view: how heads form over training. A layer × head grid coloured by a chosen metric at the current
// step; per-head time series (small multiples) over every logged step with the shared step cursor; "what changed"
// (heads ranked by the change of a metric, or by the Jensen–Shannon distance of their attention, between the
// current step and another step or run); and attention rollout at the current step (an approximation).
// Click a grid cell or a ranking row to open that layer in the head view at the current step; click a time series
// to move the shared step cursor. Metric definitions: docs/metrics.md.
// This file owns the controls, the metric series and the hover; each panel is a file of its own (grid.ts,
// series.ts, rank.ts, rollout.ts).

import { selectControl } from "../../controls/widgets";
import type { ProbeRef, SharedState, View, ViewHost } from "../../shell/view";
import { fetchMetrics, METRICS, stepIndexAtOrBefore, type MetricSeries } from "./api";
import { headIndex, layerIndex } from "../../data/labels";
import { GridPanel } from "./grid";
import { addStyle, fmt, type Cell, type Names, type Range, type Shown } from "./layout";
import { RankPanel } from "./rank";
import { page } from "../../shell/page";
import { RolloutPanel } from "./rollout";
import { SeriesPanel } from "./series";

declare global {
  interface Window {
    /** Timings of the last evolution paint (ms): metrics load (0 when cached) and drawing. */
    __tbaEvolution?: { loadMs: number; drawMs: number; series: number; steps: number };
  }
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
  private readonly grid = new GridPanel();
  private readonly series = new SeriesPanel();
  private readonly rank = new RankPanel((layer, head) => this.openHead(layer, head));
  private readonly rollout = new RolloutPanel();
  private readonly content = document.createElement("div");
  private readonly cache = new Map<string, Promise<MetricSeries | null>>();
  private host: ViewHost | null = null;
  private state: SharedState | null = null;
  private metrics: MetricSeries | null = null;
  private metric = "induction";
  private chosen = false; // by the user or a link; until then the default follows the probe (defaultMetric)
  private hover: Cell | null = null;

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
      ["jsd", "Jensen–Shannon divergence of the attention"],
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
        if (el === metricSelect) {
          this.metric = metricSelect.value;
          this.chosen = true;
        }
        this.host?.select({});
      });
    }

    this.message.className = "tba-message";
    const top = document.createElement("div");
    top.className = "evo-row";
    top.append(this.grid.el, this.rank.el, this.rollout.el);
    this.content.className = "evo-view";
    this.content.append(top, this.series.el);
    this.root.append(bar, this.message, this.content);

    const grid = this.grid.canvas;
    grid.addEventListener("mousemove", (e) => this.onGridMove(e));
    grid.addEventListener("mouseleave", () => this.setHover(null));
    grid.addEventListener("click", (e) => {
      const cell = this.grid.cellAt(e, this.metrics);
      if (cell) this.openHead(cell.layer, cell.head);
    });
    const series = this.series.canvas;
    series.addEventListener("mousemove", (e) => this.onSeriesMove(e));
    series.addEventListener("mouseleave", () => this.setHover(null));
    series.addEventListener("click", (e) => this.onSeriesClick(e));
  }

  /** Opens the head view at `layer` (same step) with `head` soloed, through the head view's own double-click. */
  private openHead(layer: number, head: number): void {
    if (!this.host || this.state?.manifest.metricsOnly) return; // no attention to open
    this.host.select({ view: "head", layer });
    const deadline = performance.now() + 5000;
    const solo = (): void => {
      const b = page().root.dataset;
      if (b["view"] !== "head") return; // the user moved on
      if (b["state"] === "ready" && b["paintedView"] === "head" && b["paintedLayer"] === String(layer)) {
        const boxes = Array.from(page().root.querySelectorAll<HTMLElement>(".head-toggle"));
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
    if (!this.chosen || !metrics.data.has(this.metric)) this.metric = defaultMetric(metrics, state.manifest.tokens);
    this.metricSelect.value = this.metric;
    this.syncRefOptions(state);
    const t1 = performance.now();
    this.draw();
    const drawMs = performance.now() - t1;
    page().hooks.__tbaEvolution = { loadMs, drawMs, series: metrics.L * metrics.H, steps: metrics.steps.length };
    this.root.dataset["drawMs"] = drawMs.toFixed(1);
    host.setSummary(
      `${metrics.L} layers × ${metrics.H} heads · metrics at ${metrics.steps.length} steps ` +
        `(${metrics.steps[0]}–${metrics.steps[metrics.steps.length - 1]}) · ` +
        (state.manifest.metricsOnly
          ? "metrics only (no attention logged for this tag: the other tabs have nothing to draw)"
          : "click a head to open it in the head view, a time series to move the step"),
    );
    const rank = {
      ref: this.refSelect.value || "prev",
      byJsd: this.compareSelect.value === "jsd",
      shown: this.shown(),
      metric: this.metric,
      loadMetrics: (probe: ProbeRef, st: SharedState) => this.loadMetrics(probe, st),
    };
    await Promise.all([
      this.rank.show(host, state, rank),
      this.rollout.show(host, state, this.fusionSelect.value, this.residual.value),
    ]);
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

  /** The chosen metric at the shared step, for the grid, the time series and the ranking. */
  private shown(): Shown {
    return {
      m: this.metrics as MetricSeries,
      values: this.values(),
      range: this.range(),
      label: this.metricLabel(),
      index: this.currentIndex(),
      step: (this.state as SharedState).step,
      hover: this.hover,
      names: this.names(),
    };
  }

  /**
   * Metrics are [L, H] of the stored layers and heads: named by the series' own numbering (head_stats meta.layers,
   * the only one a metrics-only tag has), else as the probe's manifest does when it matches, else by position.
   */
  private names(): Names {
    const s = this.metrics as MetricSeries;
    const man = (this.state as SharedState).manifest;
    const matches = man.num_layers === s.L && man.num_heads === s.H;
    const m = s.layers ? { layers: s.layers } : matches ? man : null;
    if (!m) return { layer: (l) => l, head: (_, h) => h };
    return { layer: (l) => layerIndex(m, l), head: (l, h) => headIndex(m, l, h) };
  }

  private draw(): void {
    const s = this.shown();
    this.grid.draw(s);
    this.series.draw(s);
  }

  // -- hover and clicks ------------------------------------------------------------------------------------
  private onGridMove(e: MouseEvent): void {
    const c = this.grid.cellAt(e, this.metrics);
    this.setHover(c);
    if (c && this.metrics) {
      const s = this.currentIndex();
      const x = this.values()[(s * this.metrics.L + c.layer) * this.metrics.H + c.head] as number;
      const n = this.names();
      this.grid.canvas.title = `Layer ${n.layer(c.layer)}, head ${n.head(c.layer, c.head)}: ${this.metricLabel()} = ${fmt(x)} · click to open this head in the head view`;
    }
  }

  private setHover(c: Cell | null): void {
    const same = c === this.hover || (c && this.hover && c.layer === this.hover.layer && c.head === this.hover.head);
    if (same) return;
    this.hover = c;
    if (this.metrics) this.draw();
  }

  private onSeriesMove(e: MouseEvent): void {
    const c = this.series.cellAt(e, this.metrics);
    this.setHover(c ? { layer: c.layer, head: c.head } : null);
    if (c && this.metrics) {
      const steps = this.metrics.steps;
      const step = (steps[0] as number) + c.t * ((steps[steps.length - 1] as number) - (steps[0] as number));
      const i = Math.max(0, stepIndexAtOrBefore(steps, step));
      const x = this.values()[(i * this.metrics.L + c.layer) * this.metrics.H + c.head] as number;
      const n = this.names();
      this.series.canvas.title = `Layer ${n.layer(c.layer)}, head ${n.head(c.layer, c.head)}, step ${steps[i]}: ${this.metricLabel()} = ${fmt(x)} · click to move the step`;
    }
  }

  private onSeriesClick(e: MouseEvent): void {
    const c = this.series.cellAt(e, this.metrics);
    const state = this.state;
    if (!c || !state || !this.metrics || !this.host) return;
    const steps = this.metrics.steps;
    const target = (steps[0] as number) + c.t * ((steps[steps.length - 1] as number) - (steps[0] as number));
    // The shared cursor moves over the steps with full attention logged: take the nearest of those.
    let best = state.steps[0] as number;
    for (const s of state.steps) if (Math.abs(s - target) < Math.abs(best - target)) best = s;
    this.host.select({ step: best });
  }

  hide(): void {
    this.hover = null;
  }

  linkParams(): Record<string, string> {
    return { metric: this.metric };
  }

  restoreLink(params: Record<string, string>): void {
    if (params["metric"] && METRICS.some((m) => m.name === params["metric"])) {
      this.metric = params["metric"];
      this.chosen = true;
    }
  }
}

/**
 * The metric to open with: the induction score only on a probe made for it (a repeated token sequence, as
 * metrics.repeated_random_tokens builds), where it means something; else the normalised entropy, defined for
 * every probe.
 */
export function defaultMetric(m: MetricSeries, tokens: string[]): string {
  const pick = (name: string): string | null => (m.data.has(name) ? name : null);
  const fallback = pick("entropy_norm") ?? pick("entropy") ?? (m.names[0] as string);
  return repeated(tokens) ? (pick("induction") ?? fallback) : fallback;
}

/** Whether the tokens repeat with some period p ≥ 4 (≥ 90 % of tokens equal the one p before). */
function repeated(tokens: string[]): boolean {
  const n = tokens.length;
  for (let p = 4; p <= n / 2; p++) {
    let same = 0;
    for (let i = p; i < n; i++) if (tokens[i] === tokens[i - p]) same++;
    if (same >= 4 && same >= 0.9 * (n - p - 2)) return true;
  }
  return false;
}
