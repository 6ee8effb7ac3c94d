// Query × key heatmap with an overview and a zoomed detail, shared by the matrix and diff views.
// The overview max-pools blocks of cells into pixels (max |v| keeping the sign when signed), so a single strong
// weight stays visible at 2,048 tokens where averaging would wash it out. Drag on the overview to zoom; click
// to centre a window; hover either canvas for a tooltip with the token pair and the value.

import { PUOR, VIRIDIS, scaled, type Scale } from "./colormap";
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
    this.ovWrap.className = "hm-ov-wrap";
    this.ovWrap.append(this.ov, this.sel);
    this.detWrap.className = "hm-det-wrap";
    this.qLabels.className = "hm-qlabels";
    this.kLabels.className = "hm-klabels";
    this.detWrap.append(this.kLabels, this.qLabels, this.det);
    const left = document.createElement("div");
    left.className = "hm-col";
    const ovTitle = document.createElement("div");
    ovTitle.className = "hm-title";
    ovTitle.textContent = "Overview (queries ↓, keys →; drag to zoom)";
    left.append(ovTitle, this.ovWrap, this.caption);
    const right = document.createElement("div");
    right.className = "hm-col";
    right.append(this.detWrap);
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

  resetZoom(): boolean {
    if (!this.zoom) return false;
    this.setZoom(null);
    return true;
  }

  setZoom(z: Region | null): void {
    this.zoom = z;
    this.paint();
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
    draw(this.ov, d, { q0: 0, q1: d.Q, k0: 0, k1: d.K }, this.ovW, this.ovH);
    const z = this.region();
    const nz = Math.max(z.q1 - z.q0, z.k1 - z.k0);
    this.cell = Math.max(1, Math.min(28, DETAIL_PX / nz));
    const dw = Math.max(1, Math.round(this.cell * (z.k1 - z.k0)));
    const dh = Math.max(1, Math.round(this.cell * (z.q1 - z.q0)));
    draw(this.det, d, z, dw, dh);
    this.showSel(z);
    this.labels(z, dw, dh);
    const pool = Math.max(d.Q / this.ovH, d.K / this.ovW);
    this.caption.textContent =
      `${d.Q} × ${d.K}` +
      (pool > 1 ? ` · overview max-pools ${pool.toFixed(1)} cells per pixel` : "") +
      ` · detail: queries ${z.q0}–${z.q1 - 1}, keys ${z.k0}–${z.k1 - 1}` +
      (this.zoom ? " (Esc: reset)" : "");
    this.root.dataset["zoom"] = `${z.q0},${z.q1},${z.k0},${z.k1}`;
  }

  private labels(z: Region, dw: number, dh: number): void {
    const d = this.data as HeatmapData;
    const show = this.cell >= 10;
    const key = JSON.stringify([z, show, this.cell, d.left.length, d.right.length, d.left[z.q0], d.right[z.k0]]);
    this.det.style.marginLeft = show ? "" : "0";
    this.detWrap.classList.toggle("labelled", show);
    this.detWrap.style.setProperty("--cell", `${this.cell}px`);
    this.detWrap.style.setProperty("--det-w", `${dw}px`);
    this.detWrap.style.setProperty("--det-h", `${dh}px`);
    if (key === this.labelsKey) return;
    this.labelsKey = key;
    const mk = (text: string, title: string): HTMLDivElement => {
      const el = document.createElement("div");
      el.className = "tba-token-label";
      el.textContent = displayText(text); // untrusted: text only
      el.title = title;
      return el;
    };
    if (!show) {
      this.qLabels.replaceChildren();
      this.kLabels.replaceChildren();
      return;
    }
    const qs: HTMLElement[] = [];
    for (let i = z.q0; i < z.q1; i++) qs.push(mk(d.left[i] ?? "", `query ${i}: ${d.left[i] ?? ""}`));
    const ks: HTMLElement[] = [];
    for (let j = z.k0; j < z.k1; j++) ks.push(mk(d.right[j] ?? "", `key ${j}: ${d.right[j] ?? ""}`));
    this.qLabels.replaceChildren(...qs);
    this.kLabels.replaceChildren(...ks);
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

/** Paints region `z` of `d` into canvas `c` at w × h CSS px, pooling or stretching cells as needed. */
function draw(c: HTMLCanvasElement, d: HeatmapData, z: Region, w: number, h: number): void {
  const dpr = Math.max(1, Math.min(2, window.devicePixelRatio || 1));
  const W = Math.round(w * dpr);
  const H = Math.round(h * dpr);
  c.width = W;
  c.height = H;
  c.style.width = `${w}px`;
  c.style.height = `${h}px`;
  const ctx = c.getContext("2d");
  if (!ctx) return;
  const img = ctx.createImageData(W, H);
  const px = img.data;
  const nq = z.q1 - z.q0;
  const nk = z.k1 - z.k0;
  const map = d.signed ? PUOR : VIRIDIS;
  const inv = d.vmax > 0 ? 1 / d.vmax : 0;
  const { values, off, K, signed, scale } = d;
  // Column ranges are the same for every pixel row: compute once.
  const ka = new Int32Array(W);
  const kb = new Int32Array(W);
  for (let x = 0; x < W; x++) {
    ka[x] = z.k0 + Math.floor((x * nk) / W);
    kb[x] = Math.max((ka[x] as number) + 1, z.k0 + Math.floor(((x + 1) * nk) / W));
  }
  for (let y = 0; y < H; y++) {
    const qa = z.q0 + Math.floor((y * nq) / H);
    const qb = Math.max(qa + 1, z.q0 + Math.floor(((y + 1) * nq) / H));
    for (let x = 0; x < W; x++) {
      let best = 0;
      for (let i = qa; i < qb; i++) {
        const row = off + i * K;
        for (let j = ka[x] as number; j < (kb[x] as number); j++) {
          const v = values[row + j] as number;
          if (Math.abs(v) > Math.abs(best)) best = v;
        }
      }
      let idx: number;
      if (signed) {
        const t = scaled(Math.abs(best) * inv, scale);
        idx = Math.round(127.5 + (best < 0 ? -t : t) * 127.5);
      } else {
        idx = Math.round(scaled(best * inv, scale) * 255);
      }
      const p = (y * W + x) * 4;
      const m = Math.min(255, Math.max(0, idx)) * 3;
      px[p] = map[m] as number;
      px[p + 1] = map[m + 1] as number;
      px[p + 2] = map[m + 2] as number;
      px[p + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}
