// Query × key heatmap with an overview and a zoomed detail, shared by the matrix and diff views: the overview
// (max-pooled, heatmapPaint.ts) with token-position axes, the zoomed window with its token labels (thinned at any
// zoom, heatmapAxes.ts), and a colour bar with ticks for each colour range shown (draw/legend.ts). Drag on the
// overview to zoom; click to centre a window; hover either canvas for a tooltip with the token pair and the value.

import { diverging, VIRIDIS, type Scale } from "./colormap";
import { fillPositionAxis, fillTokenLabels } from "./heatmapAxes";
import { paintRegion, regionMax } from "./heatmapPaint";
import { ColorBar } from "./legend";
import { displayText } from "./tokens";

export interface HeatmapData {
  /** Row-major [Q, K] starting at `off`. */
  values: Float32Array;
  off: number;
  Q: number;
  K: number;
  left: string[];
  right: string[];
  /** Diverging map centred at 0 (Δ); else sequential from 0. */
  signed: boolean;
  /** Colour range: [0, vmax] or [−vmax, vmax]. */
  vmax: number;
  scale: Scale;
  /** Name of the value in tooltips ("weight", "Δ weight"). */
  what: string;
  /** Colour bar title ("attention weight", "Δ attention (now − step 480)"); default: `what`. */
  legend?: string;
  /** Signed maps: what the two ends mean (["more attention now", "less"]). */
  ends?: [string, string];
}

export interface Region {
  q0: number;
  q1: number;
  k0: number;
  k1: number;
}

const DETAIL_PX = 480;
const WINDOW = 48; // cells per side of a click-zoom window; labels need ≥ 10 px per cell

export class HeatmapPanel {
  readonly root = document.createElement("div");
  private readonly ov = document.createElement("canvas");
  private readonly ovWrap = document.createElement("div");
  private readonly sel = document.createElement("div");
  private readonly det = document.createElement("canvas");
  private readonly detWrap = document.createElement("div");
  private readonly qLabels = document.createElement("div");
  private readonly kLabels = document.createElement("div");
  private readonly tip = document.createElement("div");
  private readonly caption = document.createElement("div");
  private readonly xAxis = document.createElement("div");
  private readonly yAxis = document.createElement("div");
  private readonly ovBar: ColorBar;
  private readonly detBar: ColorBar;
  /** Colour the zoomed window by its own range (its largest |value|) instead of the whole matrix's. */
  localRange = false;
  private data: HeatmapData | null = null;
  private zoom: Region | null = null;
  private drag: { i: number; j: number } | null = null;
  private ovW = 0;
  private ovH = 0;
  private cell = 10;
  private labelsKey = "";

  constructor(prefix: string) {
    this.root.className = "heatmap";
    this.ov.id = `${prefix}-overview`;
    this.ov.className = "hm-overview";
    this.det.id = `${prefix}-detail`;
    this.det.className = "hm-detail";
    this.sel.className = "hm-sel";
    this.tip.className = "hm-tip";
    this.caption.className = "hm-caption";
    this.ovWrap.className = "hm-ov-wrap hm-plot";
    this.ovWrap.append(this.ov, this.sel);
    this.xAxis.className = "hm-xaxis hm-top";
    this.yAxis.className = "hm-yaxis hm-side";
    this.ovBar = new ColorBar(`${prefix}-colorbar`);
    this.detBar = new ColorBar(`${prefix}-detail-colorbar`);
    const ovFrame = document.createElement("div");
    ovFrame.className = "hm-frame";
    ovFrame.append(this.xAxis, this.yAxis, this.ovWrap, this.ovBar.el);
    this.detWrap.className = "hm-frame hm-det-wrap";
    this.qLabels.className = "hm-qlabels hm-side";
    this.kLabels.className = "hm-klabels hm-top";
    this.det.classList.add("hm-plot");
    this.detWrap.append(this.kLabels, this.qLabels, this.det, this.detBar.el);
    const left = document.createElement("div");
    left.className = "hm-col";
    const ovTitle = document.createElement("div");
    ovTitle.className = "hm-title";
    ovTitle.textContent = "Overview (drag to zoom)";
    left.append(ovTitle, ovFrame, this.caption);
    const right = document.createElement("div");
    right.className = "hm-col";
    const detTitle = document.createElement("div");
    detTitle.className = "hm-title";
    detTitle.textContent = "Zoomed window";
    right.append(detTitle, this.detWrap);
    this.root.append(left, right, this.tip);

    this.ov.addEventListener("mousedown", (e) => {
      this.drag = this.cellAt(e, this.ov);
      e.preventDefault();
    });
    window.addEventListener("mouseup", (e) => {
      if (!this.drag || !this.data) return;
      const a = this.drag;
      this.drag = null;
      const b = this.cellAt(e, this.ov);
      const { Q, K } = this.data;
      if (Math.abs(a.i - b.i) < 2 && Math.abs(a.j - b.j) < 2) {
        // A click: centre a window on the cell.
        const q0 = clamp(b.i - WINDOW / 2, 0, Math.max(0, Q - WINDOW));
        const k0 = clamp(b.j - WINDOW / 2, 0, Math.max(0, K - WINDOW));
        this.setZoom({ q0, q1: Math.min(Q, q0 + WINDOW), k0, k1: Math.min(K, k0 + WINDOW) });
      } else {
        this.setZoom({
          q0: Math.min(a.i, b.i),
          q1: Math.max(a.i, b.i) + 1,
          k0: Math.min(a.j, b.j),
          k1: Math.max(a.j, b.j) + 1,
        });
      }
    });
    this.ov.addEventListener("mousemove", (e) => {
      const c = this.cellAt(e, this.ov);
      if (this.drag)
        this.showSel({
          q0: Math.min(this.drag.i, c.i),
          q1: Math.max(this.drag.i, c.i) + 1,
          k0: Math.min(this.drag.j, c.j),
          k1: Math.max(this.drag.j, c.j) + 1,
        });
      this.showTip(e, c.i, c.j);
    });
    this.det.addEventListener("mousemove", (e) => {
      const z = this.region();
      const r = this.det.getBoundingClientRect();
      const i = z.q0 + Math.floor(((e.clientY - r.top) / r.height) * (z.q1 - z.q0));
      const j = z.k0 + Math.floor(((e.clientX - r.left) / r.width) * (z.k1 - z.k0));
      this.showTip(e, clamp(i, z.q0, z.q1 - 1), clamp(j, z.k0, z.k1 - 1));
    });
    for (const c of [this.ov, this.det]) c.addEventListener("mouseleave", () => (this.tip.style.display = "none"));
  }

  /** New data; the zoom is kept when the matrix shape is unchanged (step changes keep the region). */
  set(d: HeatmapData): void {
    const prev = this.data;
    if (!prev || prev.Q !== d.Q || prev.K !== d.K) this.zoom = null;
    this.data = d;
  }

  /** The zoom chosen by the user (null: the default window), for deep links. */
  get zoomed(): Region | null {
    return this.zoom;
  }

  /** Called after the zoom changes by the user (drag, click, Esc). */
  onZoom: (() => void) | null = null;

  /** Sets the zoom before the next paint (a deep link); ignored when it does not fit the data. */
  presetZoom(z: Region): void {
    const d = this.data;
    if (d && z.q0 >= 0 && z.k0 >= 0 && z.q1 <= d.Q && z.k1 <= d.K && z.q0 < z.q1 && z.k0 < z.k1) this.zoom = z;
  }

  resetZoom(): boolean {
    if (!this.zoom) return false;
    this.setZoom(null);
    return true;
  }

  setZoom(z: Region | null): void {
    this.zoom = z;
    this.paint();
    this.onZoom?.();
  }

  /** The zoom region, or the default: the whole matrix when small, else its top-left window. */
  region(): Region {
    const d = this.data as HeatmapData;
    return this.zoom ?? { q0: 0, q1: Math.min(d.Q, WINDOW), k0: 0, k1: Math.min(d.K, WINDOW) };
  }

  paint(): void {
    const d = this.data;
    if (!d) return;
    const n = Math.max(d.Q, d.K);
    const side = Math.min(560, Math.max(240, n * 12));
    this.ovW = Math.max(1, Math.round((side * d.K) / n));
    this.ovH = Math.max(1, Math.round((side * d.Q) / n));
    paintRegion(this.ov, d, { q0: 0, q1: d.Q, k0: 0, k1: d.K }, this.ovW, this.ovH);
    fillPositionAxis(this.xAxis, d.K, this.ovW, true, "key position →");
    fillPositionAxis(this.yAxis, d.Q, this.ovH, false, "query ↓");
    const z = this.region();
    const nz = Math.max(z.q1 - z.q0, z.k1 - z.k0);
    // The zoomed window takes the width the page has (480 px at least, 800 at most).
    const detailPx = Math.max(DETAIL_PX, Math.min(800, (window.innerWidth || 1280) - this.ovW - 420));
    this.cell = Math.max(1, Math.min(28, detailPx / nz));
    const dw = Math.max(1, Math.round(this.cell * (z.k1 - z.k0)));
    const dh = Math.max(1, Math.round(this.cell * (z.q1 - z.q0)));
    const local = this.localRange && !!this.zoom;
    const detMax = local ? regionMax(d, z) : d.vmax;
    paintRegion(this.det, d, z, dw, dh, detMax);
    this.showSel(z);
    this.labels(z);
    const title = d.legend ?? d.what;
    const bar = (vmax: number): Parameters<ColorBar["set"]>[0] => ({
      map: d.signed ? diverging() : VIRIDIS,
      lo: d.signed ? -vmax : 0,
      hi: vmax || 1e-9,
      scale: d.scale,
      signed: d.signed,
      title,
      ...(d.ends ? { ends: d.ends } : {}),
    });
    this.ovBar.set(bar(d.vmax), this.ovH);
    this.detBar.el.style.display = local ? "" : "none";
    if (local) this.detBar.set({ ...bar(detMax), title: `${title} (this window)` }, dh);
    const pool = Math.max(d.Q / this.ovH, d.K / this.ovW);
    this.caption.textContent =
      `${d.Q} × ${d.K}` +
      (pool > 1 ? ` · overview max-pools ${pool.toFixed(1)} cells per pixel` : "") +
      ` · window: queries ${z.q0}–${z.q1 - 1}, keys ${z.k0}–${z.k1 - 1}` +
      (local ? ` · window coloured by its own range (±${detMax.toPrecision(3)})` : "") +
      (this.zoom ? " (Esc: reset)" : "");
    this.root.dataset["zoom"] = `${z.q0},${z.q1},${z.k0},${z.k1}`;
  }

  private labels(z: Region): void {
    const d = this.data as HeatmapData;
    const key = JSON.stringify([z, this.cell, d.left.length, d.right.length, d.left[z.q0], d.right[z.k0]]);
    if (key === this.labelsKey) return;
    this.labelsKey = key;
    fillTokenLabels(this.qLabels, d.left, z.q0, z.q1, this.cell, "query");
    fillTokenLabels(this.kLabels, d.right, z.k0, z.k1, this.cell, "key");
  }

  private showSel(z: Region): void {
    const d = this.data as HeatmapData;
    this.sel.style.left = `${(z.k0 / d.K) * this.ovW}px`;
    this.sel.style.top = `${(z.q0 / d.Q) * this.ovH}px`;
    this.sel.style.width = `${Math.max(2, ((z.k1 - z.k0) / d.K) * this.ovW)}px`;
    this.sel.style.height = `${Math.max(2, ((z.q1 - z.q0) / d.Q) * this.ovH)}px`;
  }

  private cellAt(e: MouseEvent, c: HTMLCanvasElement): { i: number; j: number } {
    const d = this.data as HeatmapData;
    const r = c.getBoundingClientRect();
    return {
      i: clamp(Math.floor(((e.clientY - r.top) / r.height) * d.Q), 0, d.Q - 1),
      j: clamp(Math.floor(((e.clientX - r.left) / r.width) * d.K), 0, d.K - 1),
    };
  }

  private showTip(e: MouseEvent, i: number, j: number): void {
    const d = this.data;
    if (!d) return;
    const v = d.values[d.off + i * d.K + j] as number;
    this.tip.textContent =
      `query ${i}: ${displayText(d.left[i] ?? "")}\nkey ${j}: ${displayText(d.right[j] ?? "")}\n` +
      `${d.what} ${d.signed && v > 0 ? "+" : ""}${v.toPrecision(4)}`;
    this.tip.style.display = "block";
    this.tip.style.left = `${e.clientX + 14}px`;
    this.tip.style.top = `${e.clientY + 14}px`;
    this.root.dataset["tipQuery"] = String(i);
    this.root.dataset["tipKey"] = String(j);
  }
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.max(lo, Math.min(hi, v));
}
