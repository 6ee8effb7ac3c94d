// Diff view: the current (probe, step) against a reference: another step of the same probe, or another run/probe
// at the same step. A signed heatmap of Δattention = current − reference (PuOr diverging map, colour-blind safe)
// for one head, and a ranking of every layer × head by how much it changed (mean over queries of the total
// variation distance ½·Σ_k |Δ|, 0 = identical rows, 1 = disjoint). Click a ranking row to show that head.
// The ranking table lives in ranking.ts.

import { wholeLayerOk } from "../../data/scale";
import { checkShape } from "../../data/api";
import type { Scale } from "../../draw/colormap";
import { mismatch } from "../../data/compare";
import { headAndScaleControls, setHeadOptions } from "../../controls/widgets";
import { HeatmapPanel } from "../../draw/heatmap";
import { headIndex, layerHeadLabel } from "../../data/labels";
import type { Manifest } from "../../data/api";
import { storedHead } from "../../shell/deepLink";
import type { ProbeRef, SharedState, View, ViewHost } from "../../shell/view";
import { ONE_HEAD_WEIGHTS, rankLong } from "./long";
import { Ranking } from "./ranking";

export class DiffView implements View {
  readonly id = "diff";
  readonly label = "Diff";
  readonly root = document.createElement("div");
  private readonly panel = new HeatmapPanel("diff");
  private readonly head: HTMLSelectElement;
  private readonly scale: HTMLSelectElement;
  private readonly range: HTMLSelectElement;
  private readonly note = document.createElement("div");
  private readonly rank = new Ranking((layer, head) => {
    if (!this.host) return;
    this.head.value = String(head);
    this.host.select({ layer });
  });
  private readonly content = document.createElement("div");
  private host: ViewHost | null = null;
  private readonly refLine = document.createElement("div"); // the reference actually used, and why
  private pendingLink: Record<string, string> | null = null;
  private shown: { m: Manifest; layer: number } | null = null;

  constructor() {
    const bar = document.createElement("div");
    bar.className = "tba-viewbar";
    const { head, scale, range, headLabel, scaleLabel, rangeLabel } = headAndScaleControls("diff", "√ |Δ|", () =>
      this.host?.select({}),
    );
    this.head = head;
    this.scale = scale;
    this.range = range;
    this.refLine.className = "nv-info diff-reference";
    this.refLine.id = "diff-reference";
    bar.append(headLabel, scaleLabel, rangeLabel, this.refLine);
    head.addEventListener("change", () => this.host?.updateLink());
    this.note.className = "tba-message";
    this.content.className = "diff-content";
    this.content.append(this.panel.root, this.rank.el);
    this.root.append(bar, this.note, this.content);
  }

  /**
   * The shared "Compare with" choice; when it is off, the previous logged step (or the next, at the first), and
   * the line saying which reference is used and why, so the toolbar's "—" never hides a silent choice.
   */
  private resolve(state: SharedState): { probe: ProbeRef; step: number; label: string } | string {
    if (state.compare) {
      this.refLine.textContent = `Reference: ${state.compare.label} (“Compare with” in the toolbar)`;
      return state.compare;
    }
    if (state.compareNote) {
      this.refLine.textContent = "Reference: none";
      return `Nothing to compare: ${state.compareNote}.`;
    }
    const prev = state.steps[state.stepIndex - 1];
    const step = prev ?? state.steps[state.stepIndex + 1];
    if (step === undefined) {
      this.refLine.textContent = "Reference: none";
      return "Only one step is logged: choose another run under “Compare with”.";
    }
    this.refLine.textContent =
      `Reference: step ${step}, the ${prev === undefined ? "NEXT logged step (this is the first)" : "previous logged step"}` +
      " (default while “Compare with” is “—”; choose another there)";
    return { probe: state.probe, step, label: `step ${step}` };
  }

  async show(host: ViewHost): Promise<void> {
    this.host = host;
    const state = host.state;
    const m = state.manifest;
    setHeadOptions(this.head, m.num_heads, (h) => String(headIndex(m, state.layer, h)));
    const link = this.pendingLink;
    this.pendingLink = null;
    const linked = storedHead(m, state.layer, link?.["head"]);
    if (linked !== null) this.head.value = String(linked);
    this.shown = { m, layer: state.layer };
    const ref = this.resolve(state);
    if (typeof ref === "string") return this.message(ref);
    if (ref.probe === state.probe && ref.step === state.step)
      return this.message("The reference is the step shown: Δ = 0.");
    const refManifest = await host.manifest(ref.step, ref.probe).catch(() => null);
    if (!host.isCurrent(state)) return;
    if (!refManifest) return this.message(`${ref.label} is not available.`);
    const bad = mismatch(m, refManifest);
    if (bad) return this.message(`${bad[0]?.toUpperCase()}${bad.slice(1)}.`);
    const h = Number(this.head.value);
    // A long probe or a "qk" layer: no whole layers (hundreds of MB, or a 413); say so rather than stall.
    const long = !wholeLayerOk(m, state.layer);
    if (long && m.query_len * m.key_len > ONE_HEAD_WEIGHTS) {
      const why = `one head of ${m.query_len.toLocaleString("en-US")} × ${m.key_len.toLocaleString("en-US")}`;
      this.message(`The Δ of ${why} weights is past the server's limit for a head; the ranking is below.`);
      this.content.style.display = "";
      this.panel.root.style.display = "none"; // no stale Δ of another head or step beside the ranking
      void rankLong(host, state, ref, this.rank, () => h);
      return;
    }
    // A long probe or a "qk" layer: one head at each step (never a whole layer) and the server's sampled ranking.
    const [a, b] = long
      ? await Promise.all([
          host.attentionHead(state.step, state.layer, h),
          host.attentionHead(ref.step, state.layer, h, ref.probe),
        ])
      : await Promise.all([host.attention(state.step, state.layer), host.attention(ref.step, state.layer, ref.probe)]);
    const off = long ? 0 : h;
    if (!host.isCurrent(state)) return;
    const left = m.tokens;
    const right = m.key_tokens ?? m.tokens;
    checkShape(a, left.length, right.length);
    checkShape(b, left.length, right.length);
    const n = a.Q * a.K;
    const delta = new Float32Array(n);
    let vmax = 0;
    for (let i = 0; i < n; i++) {
      const d = (a.weights[off * n + i] as number) - (b.weights[off * n + i] as number);
      delta[i] = d;
      vmax = Math.max(vmax, Math.abs(d));
    }
    this.note.textContent = "";
    this.content.style.display = "";
    this.panel.root.style.display = "";
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
      legend: `Δ attention weight (step ${state.step} − ${ref.label})`,
      ends: ["more attention now", "less attention now"],
    });
    this.panel.localRange = this.range.value === "local";
    this.panel.paint();
    const tokensDiffer = JSON.stringify(refManifest.tokens) !== JSON.stringify(m.tokens);
    host.setSummary(
      `Δ = step ${state.step} − ${ref.label} · ${layerHeadLabel(m, state.layer, h)} · orange: more attention now, ` +
        `purple: less · colour range ±${vmax.toPrecision(3)}` +
        (tokensDiffer ? " · NOTE: the tokens differ" : ""),
    );
    // The server's ranking of a long probe reads every head at both steps (seconds): the Δ is the first paint,
    // the table follows when it arrives (its title says so meanwhile).
    if (long) void rankLong(host, state, ref, this.rank, () => Number(this.head.value));
    else await this.rank.show(host, state, ref, a, () => Number(this.head.value));
  }

  linkParams(): Record<string, string> {
    const s = this.shown;
    return { head: s ? String(headIndex(s.m, s.layer, Number(this.head.value))) : "" };
  }

  restoreLink(params: Record<string, string>): void {
    this.pendingLink = params;
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
