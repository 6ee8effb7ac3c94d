// Attention rollout (Abnar & Zuidema 2020) at the shared step, after the shared layer: heads fused, the residual
// mixed in, multiplied through the layers (computed by the server, route rollout). An approximation: it ignores
// values, MLPs and norms, and the panel says so.

import { anyQkLayer, LONG_QUERIES } from "../../data/scale";
import { VIRIDIS, cssColor } from "../../draw/colormap";
import type { SharedState, ViewHost } from "../../shell/view";
import { fetchRollout, type Rollout } from "./api";
import { layerLabel } from "../../data/labels";
import { ColorBar } from "../../draw/legend";
import { tokenColor } from "../../shell/theme";
import { canvas, panel, sizeCanvas } from "./layout";
import { paintShapes, type VectorCanvas, type VectorShape } from "../../export/vector";
import { VECTOR_CELLS } from "../../draw/heatmapPaint";

export class RolloutPanel {
  readonly el: HTMLDivElement;
  private readonly canvas = canvas("evo-rollout", "evo-rollout");
  private readonly title: HTMLHeadingElement;
  private readonly note = document.createElement("div");
  private readonly cache = new Map<string, Promise<Rollout>>();

  private readonly bar = new ColorBar("evo-rollout-colorbar");

  constructor() {
    this.note.className = "evo-note";
    const row = document.createElement("div");
    row.className = "evo-with-bar";
    row.append(this.canvas, this.bar.el);
    [this.el, this.title] = panel("", row, this.note);
  }

  /** `fusion` and `residualText` are the toolbar's values (invalid residuals fall back to 0.5). */
  async show(host: ViewHost, state: SharedState, fusionChoice: string, residualText: string): Promise<void> {
    const fusion = fusionChoice || "mean";
    let residual = Number(residualText);
    if (!Number.isFinite(residual) || residual < 0 || residual > 1) residual = 0.5;
    const man = state.manifest;
    this.title.textContent = `Attention rollout after ${layerLabel(man, state.layer)} (approximation)`;
    if (man.metricsOnly) {
      sizeCanvas(this.canvas, 1, 1);
      this.note.textContent = "Rollout needs attention weights; this tag has metrics only.";
      return;
    }
    if (man.key_tokens) {
      sizeCanvas(this.canvas, 1, 1);
      this.note.textContent = "Rollout needs self-attention; this probe is cross-attention.";
      return;
    }
    // Rollout multiplies every layer's Q × Q weights: at thousands of tokens (or with a layer stored as q/k only)
    // that is gigabytes to send and a recompute of every head, so it is not asked for (data/scale.ts).
    if (man.query_len > LONG_QUERIES || anyQkLayer(man)) {
      sizeCanvas(this.canvas, 1, 1);
      this.note.textContent =
        `Rollout is not drawn at this size (${man.query_len.toLocaleString("en-US")} tokens` +
        (anyQkLayer(man) ? ", layers stored as queries and keys only" : "") +
        `): it needs every weight of every layer. The metrics above are complete.`;
      return;
    }
    const key = `${state.probe.run}\u0000${state.probe.tag}\u0000${state.step}\u0000${fusion}\u0000${residual}`;
    let p = this.cache.get(key);
    if (!p) {
      p = fetchRollout(state.probe.run, state.probe.tag, state.step, fusion, residual);
      p.catch(() => this.cache.delete(key));
      this.cache.set(key, p);
      while (this.cache.size > 16) this.cache.delete(this.cache.keys().next().value as string);
    }
    let r: Rollout;
    try {
      r = await p;
    } catch (e) {
      if (!host.isCurrent(state)) return;
      this.note.textContent = `Rollout unavailable: ${(e as Error).message}`;
      return;
    }
    if (!host.isCurrent(state)) return;
    const layer = Math.min(state.layer, r.L - 1);
    const T = r.T;
    const cell = Math.max(3, Math.min(14, Math.floor(300 / T)));
    const lab = 64;
    const ctx = sizeCanvas(this.canvas, lab + T * cell + 2, T * cell + lab);
    this.note.textContent =
      `Abnar & Zuidema (2020): heads fused by ${fusion}, Â = ${residual}·I + ${(1 - residual).toFixed(2)}·A, ` +
      "multiplied through the layers. Row = position, column = input token it draws from. It ignores values, " +
      "MLPs and norms: an approximation, not an attribution.";
    if (!ctx) return;
    const base = layer * T * T;
    let mx = 0;
    for (let i = 0; i < T * T; i++) mx = Math.max(mx, r.data[base + i] as number);
    this.bar.set({ map: VIRIDIS, lo: 0, hi: mx || 1, scale: "sqrt", title: "rollout weight" }, T * cell);
    // Drawn from vector shapes, so the SVG and PDF exports get real cells (up to VECTOR_CELLS) and text labels.
    // Beyond that many cells they are painted directly (no shape objects) and exported as a bitmap.
    const vector = T * T <= VECTOR_CELLS;
    const shapes: VectorShape[] = [];
    for (let i = 0; i < T; i++) {
      for (let j = 0; j < T; j++) {
        const x = (r.data[base + i * T + j] as number) / (mx || 1);
        const color = cssColor(VIRIDIS, Math.sqrt(x) * 255);
        if (vector) shapes.push({ rect: [lab + j * cell, i * cell, cell, cell], color, alpha: 1 });
        else {
          ctx.fillStyle = color;
          ctx.fillRect(lab + j * cell, i * cell, cell, cell);
        }
      }
    }
    // Token labels (canvas text: never HTML).
    if (cell >= 7) {
      const font = `${Math.min(11, cell)}px sans-serif`;
      const color = tokenColor("--tba-fg");
      man.tokens.forEach((t, i) => {
        shapes.push({ text: t.slice(0, 9), at: [lab - 3, i * cell + cell / 2], font, align: "right", color, alpha: 1 });
        const at: [number, number] = [lab + i * cell + cell / 2, T * cell + 3];
        shapes.push({ text: t.slice(0, 9), at, font, align: "right", vertical: true, color, alpha: 1 });
      });
    }
    paintShapes(ctx, shapes);
    (this.canvas as VectorCanvas).tbaVector = () => (vector ? shapes : null);
  }
}
