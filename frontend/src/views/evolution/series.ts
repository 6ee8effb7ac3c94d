// Small multiples: one time series per head of the chosen metric over every logged step (all plots share the
// metric's range), the hovered head highlighted and the shared step as a red cursor. Clicking a plot moves the
// shared step (the view wires the events).

import type { MetricSeries } from "./api";
import { canvas, fmt, panel, sizeCanvas, type Cell, type Shown } from "./layout";

export class SeriesPanel {
  readonly canvas = canvas("evo-series", "evo-series");
  readonly el: HTMLDivElement;
  private readonly title: HTMLHeadingElement;
  private geom = { x0: 0, y0: 0, w: 0, h: 0, gap: 0, lo: 0, hi: 1 };

  constructor() {
    [this.el, this.title] = panel("", this.canvas);
  }

  draw(s: Shown): void {
    const m = s.m;
    const { L, H, steps } = m;
    const avail = Math.max(480, Math.min(1400, (window.innerWidth || 1280) - 60));
    const x0 = 34;
    const gap = 4;
    const w = Math.max(36, Math.floor((avail - x0) / H) - gap);
    const h = Math.max(28, Math.min(64, Math.round(w * 0.6)));
    const y0 = 16;
    const ctx = sizeCanvas(this.canvas, x0 + H * (w + gap), y0 + L * (h + gap));
    const { lo, hi } = s.range;
    this.geom = { x0, y0, w, h, gap, lo, hi };
    this.title.textContent = `${s.label} over ${steps.length} steps (${fmt(lo)}–${fmt(hi)} per plot; red line = current step)`;
    if (!ctx) return;
    const v = s.values;
    const S = steps.length;
    const first = steps[0] as number;
    const span = Math.max(1, (steps[S - 1] as number) - first);
    const xs = new Float32Array(S);
    for (let i = 0; i < S; i++) xs[i] = (((steps[i] as number) - first) / span) * (w - 2) + 1;
    ctx.font = "10px sans-serif";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    ctx.fillStyle = "#555";
    for (let l = 0; l < L; l++) ctx.fillText(`L${s.names.layer(l)}`, x0 - 4, y0 + l * (h + gap) + h / 2);
    ctx.textAlign = "center";
    const every = Math.ceil(24 / (w + gap));
    for (let hd = 0; hd < H; hd += every) ctx.fillText(`H${s.names.head(0, hd)}`, x0 + hd * (w + gap) + w / 2, y0 - 8);
    const scaleY = (h - 4) / (hi - lo);
    ctx.lineWidth = 1;
    for (let l = 0; l < L; l++) {
      for (let hd = 0; hd < H; hd++) {
        const ox = x0 + hd * (w + gap);
        const oy = y0 + l * (h + gap);
        const hovered = s.hover && s.hover.layer === l && s.hover.head === hd;
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
    const cx = ((s.step - first) / span) * (w - 2) + 1;
    ctx.strokeStyle = "rgba(229,57,53,0.8)";
    ctx.beginPath();
    for (let hd = 0; hd < H; hd++) {
      const px = x0 + hd * (w + gap) + cx;
      ctx.moveTo(px, y0);
      ctx.lineTo(px, y0 + L * (h + gap) - gap);
    }
    ctx.stroke();
  }

  /** The plot under the mouse, as last drawn, and where along its step axis (0..1). */
  cellAt(e: MouseEvent, m: MetricSeries | null): (Cell & { t: number }) | null {
    if (!m) return null;
    const r = this.canvas.getBoundingClientRect();
    const { x0, y0, w, h, gap } = this.geom;
    const x = e.clientX - r.left - x0;
    const y = e.clientY - r.top - y0;
    const head = Math.floor(x / (w + gap));
    const layer = Math.floor(y / (h + gap));
    if (layer < 0 || layer >= m.L || head < 0 || head >= m.H) return null;
    return { layer, head, t: Math.min(1, Math.max(0, (x - head * (w + gap) - 1) / (w - 2))) };
  }
}
