// Matrix (heatmap) view for long sequences: query × key weights of one head of the current layer, an overview
// readable at 2,048 tokens, zoom, tooltips. Fetches only the head it draws (route `attention?head=`), or
// slices it from an already cached layer. Head, colour scale and zoom survive step changes.

import { checkShape } from "../../data/api";
import type { Scale } from "../../draw/colormap";
import { compareTarget, deltaSummary } from "../../data/compare";
import { HeatmapPanel } from "../../draw/heatmap";
import type { SharedState, View, ViewHost } from "../../shell/view";
import { headAndScaleControls, setHeadOptions } from "../../controls/widgets";
import { headIndex, layerHeadLabel } from "../../data/labels";
import type { Manifest } from "../../data/api";
import { storedHead } from "../../shell/deepLink";
import { usesTiles } from "../../data/scale";
import { TiledMatrix } from "./tiled";

export class MatrixView implements View {
  readonly id = "matrix";
  readonly label = "Matrix view";
  readonly root = document.createElement("div");
  private readonly panel = new HeatmapPanel("matrix");
  private readonly head: HTMLSelectElement;
  private readonly scale: HTMLSelectElement;
  private readonly range: HTMLSelectElement;
  private host: ViewHost | null = null;
  private pendingLink: Record<string, string> | null = null;
  private shownLayer = 0;
  private shownManifest: Manifest | null = null;
  // Long heads and "qk" layers: a tile pyramid instead of the panel (built on first use).
  private tiled: TiledMatrix | null = null;
  private tiling = false;
  private readonly rangeLabel: HTMLLabelElement;

  constructor() {
    const bar = document.createElement("div");
    bar.className = "tba-viewbar";
    const { head, scale, range, headLabel, scaleLabel, rangeLabel } = headAndScaleControls("matrix", "√ weight", () =>
      this.rerender(),
    );
    this.head = head;
    this.scale = scale;
    this.range = range;
    this.rangeLabel = rangeLabel;
    const reset = document.createElement("button");
    reset.type = "button";
    reset.textContent = "Reset zoom";
    reset.id = "matrix-reset";
    reset.addEventListener("click", () => this.resetZoom());
    bar.append(headLabel, scaleLabel, rangeLabel, reset);
    this.panel.onZoom = () => this.host?.updateLink();
    this.root.append(bar, this.panel.root);
  }

  private rerender(): void {
    if (this.host) this.host.select({});
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
    const h = Number(this.head.value);
    this.shownLayer = state.layer;
    this.shownManifest = m;
    this.setTiling(usesTiles(m, state.layer));
    if (this.tiling) return this.showTiles(host, state, h, link);
    const left = m.tokens;
    const right = m.key_tokens ?? m.tokens;
    const [attn, target] = await Promise.all([
      host.attentionHead(state.step, state.layer, h),
      compareTarget(host, state),
    ]);
    if (!host.isCurrent(state)) return;
    checkShape(attn, left.length, right.length);
    const ref = target && typeof target !== "string" ? target.ref : null;
    let values = attn.weights;
    if (ref) {
      // Comparing: signed Δ on the diverging map.
      const r = await host.attentionHead(ref.step, state.layer, h, ref.probe);
      if (!host.isCurrent(state)) return;
      values = attn.weights.map((w, i) => w - (r.weights[i] as number));
    }
    let vmax = 0;
    for (let i = 0; i < values.length; i++) vmax = Math.max(vmax, Math.abs(values[i] as number));
    this.panel.set({
      values,
      off: 0,
      Q: attn.Q,
      K: attn.K,
      left,
      right,
      signed: !!ref,
      vmax,
      scale: this.scale.value as Scale,
      what: ref ? "Δ weight" : "weight",
      legend: ref ? `Δ attention weight (now − ${ref.label})` : "attention weight",
      ...(ref ? { ends: ["more attention now", "less attention now"] as [string, string] } : {}),
    });
    this.panel.localRange = this.range.value === "local";
    const z = (link?.["zoom"] ?? "").split(",").map(Number);
    if (z.length === 4 && z.every(Number.isInteger))
      this.panel.presetZoom({ q0: z[0]!, q1: z[1]!, k0: z[2]!, k1: z[3]! });
    this.panel.paint();
    host.setSummary(
      (ref ? deltaSummary(state, ref) + " · " : typeof target === "string" ? `(${target}) · ` : "") +
        `${layerHeadLabel(m, state.layer, h)} · ${attn.Q} × ${attn.K} · colour range ${ref ? "±" : "0–"}${vmax.toPrecision(3)} ` +
        "(the largest) · drag on the overview to zoom, hover for values",
    );
  }

  private setTiling(on: boolean): void {
    this.tiling = on;
    if (on && !this.tiled) {
      this.tiled = new TiledMatrix();
      this.tiled.map.onMove = () => this.host?.updateLink();
      this.root.append(this.tiled.root);
    }
    this.panel.root.style.display = on ? "none" : "";
    if (this.tiled) this.tiled.root.style.display = on ? "" : "none";
    this.rangeLabel.style.display = on ? "none" : ""; // tiles are coloured by the head's largest weight
  }

  private async showTiles(host: ViewHost, state: SharedState, h: number, link: Record<string, string> | null) {
    const tiled = this.tiled as TiledMatrix;
    const z = (link?.["zoom"] ?? "").split(",").map(Number);
    const zoom = z.length === 4 && z.every(Number.isInteger) ? { q0: z[0]!, q1: z[1]!, k0: z[2]!, k1: z[3]! } : null;
    const note = state.compare || state.compareNote ? "Compare with is not drawn at this size" : "";
    tiled.map.onError = (e) => {
      if (host.isCurrent(state)) host.setSummary(`a tile failed: ${e instanceof Error ? e.message : String(e)}`);
    };
    const summary = await tiled.show(state, h, this.scale.value as Scale, zoom, note);
    if (!host.isCurrent(state) || summary === null) return;
    host.setSummary(summary);
  }

  private resetZoom(): boolean {
    return this.tiling && this.tiled ? this.tiled.map.fit() : this.panel.resetZoom();
  }

  linkParams(): Record<string, string> {
    const m = this.shownManifest;
    const t = this.tiling && this.tiled?.map.zoomed ? this.tiled.map.window() : null;
    const z = t ?? this.panel.zoomed;
    return {
      head: m ? String(headIndex(m, this.shownLayer, Number(this.head.value))) : "",
      zoom: z ? `${z.q0},${z.q1},${z.k0},${z.k1}` : "",
    };
  }

  restoreLink(params: Record<string, string>): void {
    this.pendingLink = params;
  }

  /** Only the head drawn (a 2,048-token layer of 12 heads would be 50 MB of codes per step). */
  prefetch(host: ViewHost, step: number): void {
    if (this.tiling) return; // tiles of the next step are asked for when it is shown
    host.attentionHead(step, host.state.layer, Number(this.head.value)).catch(() => undefined);
  }

  onKey(e: KeyboardEvent): boolean {
    if (e.key === "Escape") return this.resetZoom();
    if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      const H = this.head.options.length;
      if (H === 0) return false;
      this.head.value = String((Number(this.head.value) + (e.key === "ArrowRight" ? 1 : H - 1)) % H);
      this.rerender();
      return true;
    }
    return false;
  }
}
